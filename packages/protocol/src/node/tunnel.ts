// The tunnel's wire contract: how a node opens it (an HTTP/1.1 Upgrade to reversed HTTP/2),
// the headers of its CONNECT streams, the refusals a node answers, and the ticket that binds
// each stream to one node, sandbox and port. Both ends use the same tuning and liveness check.
import { createHmac, timingSafeEqual } from 'node:crypto';
import type { Http2Session } from 'node:http2';

/** The server's path a node dials (GET, with `Upgrade: aiva-tunnel/1`). */
export const TUNNEL_PATH = '/v1/node/tunnel';
/** The Upgrade token: after the 101 the connection carries HTTP/2, the server as its client. */
export const TUNNEL_UPGRADE = 'aiva-tunnel/1';

/** Headers of a CONNECT stream (`:authority` is `<sandboxId>:<port>`) and of its refusals. */
export const TUNNEL_HEADERS = {
  /** HMAC-SHA256 of `nodeId|sandboxId|port|exp` with the node's tunnel key, base64url. */
  ticket: 'aiva-ticket',
  /** When the ticket expires: Unix time in milliseconds. */
  ticketExp: 'aiva-ticket-exp',
  /** Why the node refused a stream: one of `TunnelRefusal`. */
  error: 'aiva-error',
} as const;

/** The `aiva-error` values, each with the `:status` it comes with. */
export const TUNNEL_REFUSALS = {
  /** 400: not a CONNECT, or an `:authority` that is no `<sandboxId>:<port>`. */
  'bad-request': 400,
  /** 403: the ticket is missing, forged, for another stream, expired or too far ahead. */
  'bad-ticket': 403,
  /** 404: the node has no such sandbox, or none that can take traffic now. */
  'sandbox-not-found': 404,
  /** 502: the sandbox runs but nothing listens on the port (ECONNREFUSED). */
  'port-closed': 502,
  /** 502: the sandbox's address did not answer (timeout, unreachable). */
  'dial-failed': 502,
} as const;
export type TunnelRefusal = keyof typeof TUNNEL_REFUSALS;

/** A ticket is valid at most this far ahead: a leaked one is worth a minute at most. */
export const TICKET_MAX_AHEAD_MS = 60_000;
/** How long the tickets the server mints live (half the limit leaves room for clock skew). */
export const TICKET_TTL_MS = 30_000;

/** Flow control: per stream, per session (the connection), and nghttp2's memory cap for both. */
export const TUNNEL_STREAM_WINDOW = 8 << 20;
export const TUNNEL_SESSION_WINDOW = 32 << 20;
/** In MB (Node's unit); the default 10 answers ENHANCE_YOUR_CALM once big windows fill. */
export const TUNNEL_MAX_SESSION_MEMORY = 128;
/** Each end PINGs this often and drops the session when a PING goes unanswered this long. */
export const TUNNEL_PING_INTERVAL_MS = 15_000;

/** The ALPN protocol a node's direct listener speaks (TLS, HTTP/2 only). */
export const DIRECT_ALPN = 'h2';

/**
 * A certificate's SHA-256 fingerprint as the contract carries it: lower-case hex, no
 * colons (Node's `fingerprint256` is upper-case with colons). Undefined for anything else.
 */
export function normalizeFingerprint(text: string | undefined): string | undefined {
  const hex = (text ?? '').replace(/:/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

/** What a ticket is for. */
export interface TicketSubject {
  nodeId: string;
  sandboxId: string;
  port: number;
}

function message(s: TicketSubject, exp: number): string | undefined {
  if (s.nodeId.includes('|') || s.sandboxId.includes('|')) return undefined;
  if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) return undefined;
  return `${s.nodeId}|${s.sandboxId}|${s.port}|${exp}`;
}

function sign(key: Uint8Array | string, text: string): Buffer {
  return createHmac('sha256', key).update(text).digest();
}

/** A ticket for one CONNECT stream, valid for `ttlMs` from `now`. */
export function mintTicket(
  key: Uint8Array | string,
  subject: TicketSubject,
  ttlMs = TICKET_TTL_MS,
  now = Date.now(),
): { ticket: string; exp: number } {
  if (ttlMs <= 0 || ttlMs > TICKET_MAX_AHEAD_MS)
    throw new RangeError(`a ticket lives 1 to ${TICKET_MAX_AHEAD_MS} ms, not ${ttlMs}`);
  const exp = Math.floor(now + ttlMs);
  const text = message(subject, exp);
  if (text === undefined) throw new TypeError(`no ticket can name ${JSON.stringify(subject)}`);
  return { ticket: sign(key, text).toString('base64url'), exp };
}

/** Why a ticket was refused, or `ok`. */
export type TicketVerdict = 'ok' | 'missing' | 'malformed' | 'expired' | 'too-far-ahead' | 'forged';

/** Checks a stream's ticket (the headers as they came) against the stream it opens, in constant time. */
export function verifyTicket(
  key: Uint8Array | string,
  subject: TicketSubject,
  ticket: string | string[] | undefined,
  exp: string | string[] | undefined,
  now = Date.now(),
): TicketVerdict {
  if (typeof ticket !== 'string' || typeof exp !== 'string') return 'missing';
  if (!/^\d{1,16}$/.test(exp) || !/^[A-Za-z0-9_-]{43}$/.test(ticket)) return 'malformed';
  const expMs = Number(exp);
  if (expMs <= now) return 'expired';
  if (expMs > now + TICKET_MAX_AHEAD_MS) return 'too-far-ahead';
  const text = message(subject, expMs);
  if (text === undefined) return 'malformed';
  // Compared as text: the one encoding of the signature, not any that decodes to it (the
  // last character of 43 has two bits no decoder reads).
  const given = Buffer.from(ticket);
  const expected = Buffer.from(sign(key, text).toString('base64url'));
  return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'forged';
}

/**
 * Checks that the peer still answers: a PING every `intervalMs`; one unanswered for as long
 * destroys the session (its streams fail, its `close` fires). Stops when the session closes.
 */
export function superviseSession(session: Http2Session, intervalMs = TUNNEL_PING_INTERVAL_MS): void {
  let waiting = false;
  const timer = setInterval(() => {
    if (session.destroyed || session.closed) return;
    if (waiting) {
      session.destroy(new Error(`the tunnel's peer did not answer a PING within ${intervalMs} ms`));
      return;
    }
    waiting = true;
    const sent = session.ping((err) => {
      if (!err) waiting = false;
    });
    if (!sent) waiting = false;
  }, intervalMs);
  timer.unref();
  session.once('close', () => clearInterval(timer));
}
