import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { ENVD_PORT, fileSignature } from '@aiva/protocol';
import type { ProxyRoute } from './sandbox-proxy.js';

/** A sandbox a signed file URL may be for: its id and the envd token its URLs are signed with. */
export interface SigningSandbox {
  id: string;
  envdAccessToken: string;
}

/**
 * The sandbox a signed file URL on the shared sandbox URL is for. `downloadUrl` and
 * `uploadUrl` make `<sandbox URL>/files?path=…&username=…&signature=…`, and with E2B's
 * one sandbox URL for all (`E2B_SANDBOX_URL`) nothing in it names the sandbox: the one
 * whose envd token makes the same signature is meant (a token is 32 random characters,
 * so two never match). Undefined when the request is not a signed file request;
 * `unmatched` when no live sandbox signed it. envd checks the signature and its
 * expiry again itself.
 */
export function signedFileRoute(
  req: IncomingMessage,
  sandboxes: Iterable<SigningSandbox>,
): ProxyRoute | 'unmatched' | undefined {
  // Every API request passes here: only a /files request is parsed.
  if (!req.url?.startsWith('/files?')) return undefined;
  const url = new URL(req.url, 'http://aiva');
  const signature = url.searchParams.get('signature');
  if (url.pathname !== '/files' || !signature) return undefined;
  const operation = req.method === 'GET' ? 'read' : req.method === 'POST' ? 'write' : undefined;
  const rawExpiration = url.searchParams.get('signature_expiration');
  const expiration = rawExpiration === null ? undefined : Number(rawExpiration);
  if (!operation || (expiration !== undefined && !Number.isInteger(expiration))) return 'unmatched';
  const path = url.searchParams.get('path') ?? '';
  const username = url.searchParams.get('username') ?? '';
  const given = Buffer.from(signature);
  for (const s of sandboxes) {
    const expected = Buffer.from(fileSignature(path, operation, username, s.envdAccessToken, expiration));
    // In constant time: how much of a signature matched must not show in the answer's timing.
    if (expected.length === given.length && timingSafeEqual(expected, given))
      return { sandboxId: s.id, port: ENVD_PORT };
  }
  return 'unmatched';
}
