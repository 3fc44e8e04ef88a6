/** envd's port inside every sandbox. */
export const ENVD_PORT = 49983;

/** What the node tells envd when a sandbox starts (envd's POST /init). */
export interface EnvdInit {
  envVars?: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
  defaultWorkdir?: string;
  /** The host's clock, so that a guest restored from a snapshot is not in the past. */
  timestamp?: string;
  hostname?: string;
}

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
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 204) return res.headers.get('e2b-envd-version') ?? UNKNOWN_ENVD_VERSION;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = ((e as Error).cause as Error | undefined)?.message ?? (e as Error).message;
    }
    if (options.stillAlive && attempt % 10 === 9 && !(await options.stillAlive())) {
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
  const res = await fetch(`http://${address}:${ENVD_PORT}/init`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      ...(currentToken ? { 'x-access-token': currentToken } : {}),
    },
    body: JSON.stringify(init),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status >= 300) throw new EnvdUnreachableError(`envd refused /init: HTTP ${res.status} ${text}`);
}

/** What envd's GET /metrics reports (E2B's field names). */
export interface EnvdMetrics {
  ts: number;
  cpu_count: number;
  cpu_used_pct: number;
  mem_total: number;
  mem_used: number;
  mem_cache?: number;
  disk_used: number;
  disk_total: number;
}

/** Reads the sandbox's CPU, memory and disk as envd sees them (GET /metrics). */
export async function envdMetrics(address: string, accessToken: string): Promise<EnvdMetrics> {
  const res = await fetch(`http://${address}:${ENVD_PORT}/metrics`, {
    headers: { 'x-access-token': accessToken },
    signal: AbortSignal.timeout(5000),
  });
  if (res.status !== 200)
    throw new EnvdUnreachableError(`envd /metrics answered ${res.status}: ${await res.text()}`);
  return (await res.json()) as EnvdMetrics;
}
