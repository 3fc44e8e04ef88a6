import { request } from 'node:http';
import {
  ENVD_ACCESS_TOKEN_HEADER,
  ENVD_PORT,
  ENVD_VERSION_HEADER,
  type EnvdInit,
  type EnvdMetrics,
  EnvdMetricsBody,
} from '@aiva/protocol';
import { Check } from 'typebox/value';

/** What a sandbox reports when its envd does not say its version (a valid semver, older than any feature gate). */
export const UNKNOWN_ENVD_VERSION = '0.0.1';

export class EnvdUnreachableError extends Error {
  override name = 'EnvdUnreachableError';
}

/**
 * Polls envd's /health on `address` until it answers 204, and returns the version envd
 * reports. Gives up after `timeoutMs`, when `signal` aborts, or as soon as `stillAlive`
 * says the sandbox died.
 */
export async function waitForEnvd(
  address: string,
  options: { timeoutMs: number; signal?: AbortSignal; stillAlive?: () => Promise<boolean> },
): Promise<string> {
  const url = `http://${address}:${ENVD_PORT}/health`;
  const deadline = Date.now() + options.timeoutMs;
  let last = 'no answer';
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw new EnvdUnreachableError('interrupted while waiting for envd');
    const tried = Date.now();
    try {
      const res = await oneShot(url, { timeoutMs: 1000 });
      if (res.status === 204) return res.headers[ENVD_VERSION_HEADER]?.toString() ?? UNKNOWN_ENVD_VERSION;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message;
    }
    // Every 10th attempt, or after one that hung (a guest that died answers nothing at all).
    const slow = Date.now() - tried > 250;
    if (options.stillAlive && (attempt % 10 === 9 || slow) && !(await options.stillAlive())) {
      throw new EnvdUnreachableError('the sandbox stopped before envd answered');
    }
    if (Date.now() > deadline) {
      throw new EnvdUnreachableError(`envd did not answer within ${options.timeoutMs} ms (${last})`);
    }
    await new Promise((r) => setTimeout(r, attempt < 50 ? 5 : 25));
  }
}

/**
 * Sends the sandbox's identity and settings to envd (POST /init). Replacing an access
 * token that is already set needs the current one (`currentToken`).
 */
export async function initEnvd(address: string, init: EnvdInit, currentToken?: string): Promise<void> {
  const res = await oneShot(`http://${address}:${ENVD_PORT}/init`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(currentToken ? { [ENVD_ACCESS_TOKEN_HEADER]: currentToken } : {}),
    },
    body: JSON.stringify(init),
    timeoutMs: 10_000,
  });
  if (res.status >= 300) throw new EnvdUnreachableError(`envd refused /init: HTTP ${res.status} ${res.text}`);
}

/**
 * One HTTP request on a connection of its own, closed after the answer (no keep-alive
 * pool): a sandbox's address is reused by the next sandbox, and a clone restored from a
 * VM snapshot wakes with the template's TCP state, so a pooled connection to an address
 * can meet a guest that never had it (or thinks it is another one).
 */
function oneShot(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: options.method ?? 'GET',
        headers: { ...options.headers, connection: 'close' },
        agent: false,
        timeout: options.timeoutMs,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** Reads the sandbox's CPU, memory and disk as envd sees them (GET /metrics), checked against the contract. */
export async function envdMetrics(address: string, accessToken: string): Promise<EnvdMetrics> {
  const res = await fetch(`http://${address}:${ENVD_PORT}/metrics`, {
    headers: { [ENVD_ACCESS_TOKEN_HEADER]: accessToken },
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200)
    throw new EnvdUnreachableError(`envd /metrics answered ${res.status}: ${await res.text()}`);
  // What a sandbox's envd says is the tenant's word: checked before anyone uses it.
  const body: unknown = await res.json().catch(() => undefined);
  if (!Check(EnvdMetricsBody, body))
    throw new EnvdUnreachableError(
      `envd /metrics answered what is not E2B's metrics: ${JSON.stringify(body)?.slice(0, 200)}`,
    );
  return body;
}

/** Writes `body` to `path` in the sandbox as `user` through envd's POST /files (an octet stream). */
export async function uploadToSandbox(
  address: string,
  path: string,
  body: NodeJS.ReadableStream,
  options: { user: string; accessToken: string; signal?: AbortSignal },
): Promise<void> {
  const url = new URL(`http://${address}:${ENVD_PORT}/files`);
  url.searchParams.set('path', path);
  url.searchParams.set('username', options.user);
  const res = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = request(
      url,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          [ENVD_ACCESS_TOKEN_HEADER]: options.accessToken,
          connection: 'close',
        },
        agent: false,
        signal: options.signal,
      },
      (r) => {
        let text = '';
        r.setEncoding('utf8');
        r.on('data', (d: string) => {
          text += d;
        });
        r.on('end', () => resolve({ status: r.statusCode ?? 0, text }));
        r.on('error', reject);
      },
    );
    req.on('error', reject);
    body.on('error', (e) => req.destroy(e));
    body.pipe(req);
  });
  if (res.status >= 300)
    throw new Error(`envd refused the upload of ${path}: HTTP ${res.status} ${res.text}`);
}
