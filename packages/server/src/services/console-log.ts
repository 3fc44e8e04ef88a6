import type { SandboxLogEntry } from '../api/e2b/schemas.js';

/** Log levels, least severe first. */
const LEVELS = ['debug', 'info', 'warn', 'error'];

/**
 * A sandbox's console output as E2B log entries. Lines of JSON with `level`, `time` and
 * `msg` (or `message`) keep theirs; guest kernel lines (`[   1.234] …`) are timed from the
 * sandbox's start; any other line gets the start time and level `info`.
 */
export function parseConsoleLog(text: string, startedAt: Date): SandboxLogEntry[] {
  const start = startedAt.getTime();
  const entries: SandboxLogEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) continue;
    if (line.startsWith('{')) {
      try {
        const j = JSON.parse(line) as Record<string, unknown>;
        const level = typeof j.level === 'string' && LEVELS.includes(j.level) ? j.level : 'info';
        const time =
          typeof j.time === 'number' ? j.time : typeof j.time === 'string' ? Date.parse(j.time) : start;
        const message = String(j.msg ?? j.message ?? line);
        const fields: Record<string, string> = {};
        for (const [k, v] of Object.entries(j)) {
          if (!['level', 'time', 'msg', 'message'].includes(k))
            fields[k] = typeof v === 'string' ? v : JSON.stringify(v);
        }
        entries.push({
          timestamp: new Date(Number.isNaN(time) ? start : time).toISOString(),
          level: level as SandboxLogEntry['level'],
          message,
          fields,
        });
        continue;
      } catch {
        // not JSON after all
      }
    }
    const kernel = /^\[\s*(\d+)\.(\d+)\]\s?(.*)$/.exec(line);
    if (kernel) {
      const ms = Number(kernel[1]) * 1000 + Number((kernel[2] ?? '0').slice(0, 3).padEnd(3, '0'));
      entries.push({
        timestamp: new Date(start + ms).toISOString(),
        level: 'info',
        message: kernel[3] ?? '',
        fields: { source: 'kernel' },
      });
      continue;
    }
    entries.push({
      timestamp: startedAt.toISOString(),
      level: 'info',
      message: line,
      fields: { source: 'console' },
    });
  }
  return entries;
}

/** What a client asks of a sandbox's logs (E2B's `GET /v2/sandboxes/{id}/logs`). */
export interface LogQuery {
  /** Entries from this time on (ms since the epoch), or up to it going backward. */
  cursor?: number;
  limit?: number;
  direction?: 'forward' | 'backward';
  level?: string;
  search?: string;
}

/** The entries of a console log that `q` asks for: at or above its level, containing its text, from its cursor on. */
export function consoleLogEntries(text: string, startedAt: Date, q: LogQuery): SandboxLogEntry[] {
  const minLevel = LEVELS.indexOf(q.level ?? 'debug');
  let entries = parseConsoleLog(text, startedAt).filter(
    (e) =>
      LEVELS.indexOf(e.level) >= minLevel &&
      (!q.search || e.message.includes(q.search)) &&
      (q.cursor === undefined ||
        (q.direction === 'backward'
          ? Date.parse(e.timestamp) <= q.cursor
          : Date.parse(e.timestamp) >= q.cursor)),
  );
  if (q.direction === 'backward') entries = entries.reverse();
  return entries.slice(0, q.limit ?? 1000);
}
