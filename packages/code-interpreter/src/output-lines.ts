// The lines of `POST /execute`'s NDJSON stream, with E2B's field names (what
// `@e2b/code-interpreter`'s parseOutput reads), and the mapping from a Jupyter message's
// MIME bundle to E2B's result fields.

export type OutputLine =
  | { type: 'number_of_executions'; execution_count: number }
  | { type: 'stdout' | 'stderr'; text: string; timestamp: string }
  | ({ type: 'result'; is_main_result: boolean } & ResultFields)
  | { type: 'error'; name: string; value: string; traceback: string }
  | { type: 'keepalive' }
  | { type: 'end_of_execution' };

export interface ResultFields {
  text?: string;
  html?: string;
  markdown?: string;
  svg?: string;
  png?: string;
  jpeg?: string;
  pdf?: string;
  latex?: string;
  json?: unknown;
  javascript?: string;
  data?: unknown;
  chart?: unknown;
  /** MIME types without a field of their own, by MIME type (E2B nests them here). */
  extra: Record<string, unknown>;
}

/** Result field → the MIME type it holds. */
const FIELDS: [keyof Omit<ResultFields, 'extra' | 'text'>, string][] = [
  ['html', 'text/html'],
  ['markdown', 'text/markdown'],
  ['svg', 'image/svg+xml'],
  ['png', 'image/png'],
  ['jpeg', 'image/jpeg'],
  ['pdf', 'application/pdf'],
  ['latex', 'text/latex'],
  ['json', 'application/json'],
  ['javascript', 'application/javascript'],
  ['data', 'e2b/data'],
  ['chart', 'e2b/chart'],
];

/**
 * E2B's result fields of a `display_data`/`execute_result` MIME bundle. As E2B's server
 * does: `text/plain` becomes `text` with one pair of surrounding quotes removed (a
 * Python string's repr `'abc'` reads `abc`), and unknown MIME types go under `extra`.
 */
export function resultFields(bundle: Record<string, unknown>): ResultFields {
  const rest = { ...bundle };
  const out: ResultFields = { extra: rest };
  const plain = rest['text/plain'];
  delete rest['text/plain'];
  if (typeof plain === 'string') {
    const quoted =
      plain.length >= 2 &&
      ((plain.startsWith("'") && plain.endsWith("'")) || (plain.startsWith('"') && plain.endsWith('"')));
    out.text = quoted ? plain.slice(1, -1) : plain;
  }
  for (const [field, mime] of FIELDS) {
    if (mime in rest) {
      // A field's content is the kernel's: strings for text and base64 images, a dict for json.
      (out as unknown as Record<string, unknown>)[field] = rest[mime];
      delete rest[mime];
    }
  }
  return out;
}

/** The most text one stdout or stderr line carries: the client rescans its buffer per chunk. */
export const MAX_STREAM_TEXT = 64 * 1024;

/** `text` cut into pieces of at most MAX_STREAM_TEXT UTF-16 units, never inside a surrogate pair. */
export function splitStreamText(text: string, max = MAX_STREAM_TEXT): string[] {
  if (text.length <= max) return [text];
  const pieces: string[] = [];
  let at = 0;
  while (at < text.length) {
    let end = Math.min(at + max, text.length);
    const last = text.charCodeAt(end - 1);
    if (end < text.length && last >= 0xd800 && last <= 0xdbff) end--;
    pieces.push(text.slice(at, end));
    at = end;
  }
  return pieces;
}

/** The NDJSON form of one line. */
export const ndjson = (line: OutputLine): string => `${JSON.stringify(line)}\n`;
