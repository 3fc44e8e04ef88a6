import { type Logger, pino } from 'pino';
import { prettyFactory } from 'pino-pretty';

export interface LoggerOptions {
  level: string;
  /** Human-readable lines instead of JSON (default: when stdout is a terminal). */
  pretty?: boolean;
  /** Where the lines go (default: stdout). */
  destination?: { write(line: string): unknown };
}

/**
 * The logger of a long-running command (`aiva up`): JSON lines, one per event, for log
 * collectors, or readable lines with colours when a person watches it on a terminal.
 * Pretty lines are formatted in this thread and written synchronously, so none is lost
 * when the process exits right after logging.
 */
export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const settings = { level: options.level, base: { pid: process.pid } };
  if (!pretty) return options.destination ? pino(settings, options.destination) : pino(settings);
  const out = options.destination ?? process.stdout;
  const format = prettyFactory({ translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' });
  return pino(settings, { write: (line: string) => void out.write(format(line)) });
}
