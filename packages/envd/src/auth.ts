import { timingSafeEqual } from 'node:crypto';
import { fileSignature } from '@aiva/protocol';

/** Constant-time comparison of two strings. */
export function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class SignatureError extends Error {}

/**
 * Authorizes a /files request: with no access token set anything goes; otherwise the
 * request carries the token or a valid, unexpired signature. Throws SignatureError with
 * the message E2B's envd answers (in a 401).
 */
export function checkFileAccess(opts: {
  token: string | undefined;
  headerToken: string | undefined;
  signature: string | undefined;
  expiration: string | undefined;
  path: string;
  username: string | undefined;
  operation: 'read' | 'write';
  now?: number;
}): void {
  const { token, headerToken } = opts;
  if (token === undefined) return;
  if (headerToken) {
    if (!sameSecret(headerToken, token))
      throw new SignatureError('access token present in header but does not match');
    return;
  }
  if (opts.signature === undefined) throw new SignatureError('missing signature query parameter');
  let expiration: number | undefined;
  if (opts.expiration !== undefined) {
    expiration = Number(opts.expiration);
    if (!Number.isInteger(expiration)) throw new SignatureError('invalid signature expiration');
  }
  const expected = fileSignature(opts.path, opts.operation, opts.username ?? '', token, expiration);
  if (!sameSecret(expected, opts.signature)) throw new SignatureError('invalid signature');
  if (expiration !== undefined && expiration < Math.floor((opts.now ?? Date.now()) / 1000)) {
    throw new SignatureError('signature is already expired');
  }
}

/** The user named by `Authorization: Basic base64("<user>:")`, if any. */
export function basicAuthUser(header: string | null | undefined): string | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+(\S+)$/i.exec(header.trim());
  if (!m?.[1]) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const user = decoded.split(':')[0];
  return user ? user : undefined;
}
