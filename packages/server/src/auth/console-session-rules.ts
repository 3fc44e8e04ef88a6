import { createHash, randomBytes } from 'node:crypto';

/**
 * The web console's session rules, without I/O: the token, its cookie, and the CSRF check
 * of a cookie-authenticated call. (`services/console-sessions.ts` stores sessions;
 * `api/authenticate.ts` applies these.)
 */

/** The cookie that carries a console session's token. */
export const SESSION_COOKIE = 'aiva_console';

/** How long a session lasts (it ends sooner with its key: deleted or expired). */
export const SESSION_LIFETIME_MS = 12 * 3600_000;

/** The header every console call that changes something carries; a cross-site form cannot send one. */
export const CONSOLE_HEADER = 'x-aiva-console';

/** 32 random bytes, base64url: cookie-safe as is. */
const TOKEN_PATTERN = /^[A-Za-z0-9_-]{43}$/;

export function newSessionToken(): string {
  return randomBytes(32).toString('base64url');
}

export function isSessionToken(token: string): boolean {
  return TOKEN_PATTERN.test(token);
}

/** What is stored instead of the token: its SHA-256, in hex. */
export function hashSessionToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

/** The session cookie's attributes: HttpOnly, SameSite=Strict, the whole origin, an expiry; Secure over TLS. */
export function sessionCookieOptions(expiresAt: Date, secure: boolean) {
  return {
    path: '/',
    httpOnly: true,
    sameSite: 'strict' as const,
    secure,
    expires: expiresAt,
  };
}

/**
 * Why a call authenticated by the session cookie is refused as a possible cross-site
 * request, or undefined if it may go on. GET and HEAD change nothing and always may;
 * anything else needs `X-Aiva-Console: 1`, and an `Origin`, when the browser sends one,
 * naming this very host.
 */
export function csrfRefusal(
  method: string,
  headers: { host?: string; origin?: string; console?: string },
): string | undefined {
  if (method === 'GET' || method === 'HEAD') return undefined;
  if (headers.console !== '1')
    return `a console call that changes something must carry the header X-Aiva-Console: 1 (${method} refused)`;
  if (headers.origin === undefined) return undefined;
  let host: string | undefined;
  try {
    host = new URL(headers.origin).host;
  } catch {
    host = undefined;
  }
  if (!host || !headers.host || host !== headers.host.toLowerCase())
    return `cross-origin console call refused: Origin ${headers.origin} is not this server (${headers.host ?? 'no Host'})`;
  return undefined;
}

/**
 * A Cookie header without the console's session (undefined if nothing else is left): what
 * sandbox traffic on the server's own host carries to the sandbox, so that code in a
 * sandbox never sees a console session.
 */
export function withoutSessionCookie(header: string): string | undefined {
  const kept = header
    .split(';')
    .map((c) => c.trim())
    .filter((c) => c !== '' && !c.startsWith(`${SESSION_COOKIE}=`));
  return kept.length > 0 ? kept.join('; ') : undefined;
}
