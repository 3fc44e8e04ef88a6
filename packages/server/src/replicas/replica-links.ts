import { createHmac, timingSafeEqual } from 'node:crypto';
import { ForbiddenError } from '../services/errors.js';

// Links one server replica gives another for what only it holds on its disk (a layer of
// its store): signed with the replicas' shared secret, for one path, for a minute.

const LINK_MS = 60_000;

const mac = (secret: Buffer, path: string, expires: number) =>
  createHmac('sha256', secret).update(`replica ${path} ${expires}`).digest('hex');

/** The query string that lets a replica GET `path` of another for a minute. */
export function replicaLinkQuery(secret: Buffer, path: string): string {
  const expires = Date.now() + LINK_MS;
  return new URLSearchParams({ expires: String(expires), signature: mac(secret, path, expires) }).toString();
}

/** Throws ForbiddenError unless `query` is a live link to `path` signed with `secret`. */
export function checkReplicaLink(
  secret: Buffer,
  path: string,
  query: { expires?: string; signature?: string },
): void {
  const expires = Number(query.expires);
  const want = Buffer.from(Number.isFinite(expires) ? mac(secret, path, expires) : '');
  const got = Buffer.from(query.signature ?? '');
  if (want.length === 0 || want.length !== got.length || !timingSafeEqual(want, got) || expires < Date.now())
    throw new ForbiddenError('not a valid link from another server replica');
}
