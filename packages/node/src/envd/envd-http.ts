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

export class EnvdUnreachableError extends Error {
  override name = 'EnvdUnreachableError';
}

/**
 * Polls envd's /health on `address` until it answers 204. Gives up after `timeoutMs`,
 * when `signal` aborts, or as soon as `stillAlive` says the sandbox died.
 */
export async function waitForEnvd(
  address: string,
  options: { timeoutMs: number; signal?: AbortSignal; stillAlive?: () => Promise<boolean> },
): Promise<void> {
  const url = `http://${address}:${ENVD_PORT}/health`;
  const deadline = Date.now() + options.timeoutMs;
  let last = 'no answer';
  for (let attempt = 0; ; attempt++) {
    if (options.signal?.aborted) throw new EnvdUnreachableError('interrupted while waiting for envd');
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      if (res.status === 204) return;
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

/** Sends the sandbox's identity and settings to envd (POST /init). */
export async function initEnvd(address: string, init: EnvdInit): Promise<void> {
  const res = await fetch(`http://${address}:${ENVD_PORT}/init`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(init),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  if (res.status >= 300) throw new EnvdUnreachableError(`envd refused /init: HTTP ${res.status} ${text}`);
}
