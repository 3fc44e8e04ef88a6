import { readFile } from 'node:fs/promises';
import { AddressPool } from '@aiva/node';
import { InvalidArgumentError } from 'commander';
import type { Logger } from 'pino';

// Parsers of option values shared by the commands that run a process (`up`, `server`, `node join`).

/** A whole number from `min` to `max`, named `name` in the error. */
export const int = (name: string, min: number, max: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}`);
  return n;
};

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function logLevel(v: string): string {
  if (!(LOG_LEVELS as readonly string[]).includes(v))
    throw new InvalidArgumentError(`one of ${LOG_LEVELS.join(', ')}`);
  return v;
}

/** `k=v` into the labels gathered so far. */
export function label(v: string, all: Record<string, string>): Record<string, string> {
  const m = /^([a-z0-9]([a-z0-9._/-]{0,61}[a-z0-9])?)=([A-Za-z0-9._-]{0,63})$/.exec(v);
  if (!m) throw new InvalidArgumentError('k=v: a lower-case key and a value of letters, digits, . _ -');
  return { ...all, [m[1] as string]: m[3] as string };
}

/** The aiva version of this install. */
export async function aivaVersion(): Promise<string> {
  return (
    JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  ).version;
}

/** An IPv4 block the node cuts into one /30 per sandbox (`--address-block`). */
export function addressBlock(v: string): string {
  try {
    new AddressPool(v);
  } catch {
    throw new InvalidArgumentError('an IPv4 block such as 10.11.0.0/16 (prefix /8 to /28)');
  }
  return v;
}

/**
 * Runs `shutdown` on SIGTERM or SIGINT, then exits 0 (1 if it failed); a second signal
 * exits at once.
 */
export function onStopSignal(logger: Logger, message: string, shutdown: () => Promise<void>): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) process.exit(130);
    stopping = true;
    logger.info({ signal }, message);
    try {
      await shutdown();
      process.exit(0);
    } catch (e) {
      logger.error({ err: e }, 'shutdown failed');
      process.exit(1);
    }
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
