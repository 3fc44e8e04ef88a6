import { readPriceTable } from '@aiva/server';
import type { Command } from 'commander';
import { int } from './option-parsers.js';

export interface MeteringOptions {
  meteringInterval?: number;
  prices?: string;
}

/** Adds `--metering-interval` and `--prices` (`aiva up`, `aiva server`). */
export function meteringOptions(command: Command): Command {
  return command
    .option(
      '--metering-interval <s>',
      'seconds between usage records of each sandbox (env AIVA_METERING_INTERVAL_S; default 60)',
      int('metering-interval', 1, 3600),
    )
    .option(
      '--prices <file>',
      'the price table (JSON, see README) the usage report’s cost comes from (env AIVA_PRICES; default: no cost)',
    );
}

/** The server's `metering` config from the options and their environment variables. */
export function meteringConfig(opts: MeteringOptions): {
  intervalSeconds?: number;
  prices?: ReturnType<typeof readPriceTable>;
} {
  const fromEnv = process.env.AIVA_METERING_INTERVAL_S;
  let intervalSeconds = opts.meteringInterval;
  if (intervalSeconds === undefined && fromEnv) {
    intervalSeconds = Number(fromEnv);
    if (!Number.isInteger(intervalSeconds) || intervalSeconds < 1 || intervalSeconds > 3600)
      throw new Error(`AIVA_METERING_INTERVAL_S must be whole seconds from 1 to 3600, got ${fromEnv}`);
  }
  const pricesFile = opts.prices ?? (process.env.AIVA_PRICES || undefined);
  return { intervalSeconds, prices: pricesFile ? readPriceTable(pricesFile) : undefined };
}
