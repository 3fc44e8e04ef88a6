import { InvalidRequestError } from './errors.js';

/**
 * Keyset pagination over (time, id), newest or oldest first: a list reads `limit + 1`
 * rows after the cursor; the extra one says there is a next page, whose token is the last
 * row's time and id (base64url JSON, opaque to clients).
 */
export function keysetPage<T extends { id: string }>(
  rows: T[],
  limit: number,
  time: (row: T) => Date,
): { page: T[]; nextToken?: string } {
  const page = rows.slice(0, limit);
  const last = page.at(-1);
  if (rows.length <= limit || !last) return { page };
  const nextToken = Buffer.from(JSON.stringify({ t: time(last).toISOString(), id: last.id })).toString(
    'base64url',
  );
  return { page, nextToken };
}

/** The position a `nextToken` stands for; InvalidRequestError if this server did not issue it. */
export function parseCursor(token: string): { t: string; id: string } {
  try {
    const c = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as { t?: unknown; id?: unknown };
    if (typeof c.t === 'string' && typeof c.id === 'string' && !Number.isNaN(Date.parse(c.t)))
      return { t: c.t, id: c.id };
  } catch {
    // fall through
  }
  throw new InvalidRequestError('nextToken is not a token this server issued');
}
