import { get } from 'node:http';
import { ENVD_PORT } from '@aiva/protocol';
import { checkHost, dataDir, ImageStore, SandboxManager } from '../../src/index.js';
import { createRuntimes } from '../../src/runtime/select.js';
import type { DriverName, SandboxRuntime } from '../../src/runtime/types.js';
import type { SandboxManagerOptions } from '../../src/sandbox/sandbox-options.js';
import { envdDir, repoImages } from './repo.js';
import { tempDir } from './temp-dir.js';

/** The real image store (templates are cached in the data directory between runs). */
export const images = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir });

/** This host's runtimes, as the node would build them. */
export async function hostRuntimes(): Promise<Map<DriverName, SandboxRuntime>> {
  return createRuntimes(await checkHost());
}

/**
 * A sandbox manager with its own temporary data directory (sandbox records) and the
 * shared image store. Only one can be open at a time: close it (`closeManager`) in the
 * test or hook that opened it.
 */
export async function testManager(
  options: Partial<
    Pick<
      SandboxManagerOptions,
      | 'runtimes'
      | 'readyTimeoutMs'
      | 'defaultDriver'
      | 'monitorIntervalMs'
      | 'images'
      | 'networkPoolSize'
      | 'dnsUpstreams'
      | 'onState'
    >
  > & {
    home?: string;
  } = {},
): Promise<SandboxManager> {
  const home = options.home ?? (await tempDir('aiva-node-'));
  const runtimes = options.runtimes ?? (await hostRuntimes());
  const manager = await SandboxManager.open({
    home,
    images: options.images ?? images,
    runtimes,
    defaultDriver: options.defaultDriver ?? 'container',
    readyTimeoutMs: options.readyTimeoutMs,
    monitorIntervalMs: options.monitorIntervalMs ?? 200,
    networkPoolSize: options.networkPoolSize,
    onState: options.onState,
    // Never the host's own resolver: tests give the test internet's.
    dnsUpstreams: options.dnsUpstreams ?? ['127.0.0.1:9'],
    // Other test runs on this host (another checkout) wait their turn.
    waitForLock: true,
  });
  return manager;
}

/** Kills the manager's sandboxes and closes it. */
export async function closeManager(m: SandboxManager): Promise<void> {
  await m.killAll();
  await m.close();
}

/**
 * envd's /health status (or the error's name), on a connection of its own: sandbox
 * addresses are reused, so a kept-alive connection from an earlier test would reach a
 * sandbox that never had it.
 */
export async function envdHealth(address: string, timeoutMs = 2000): Promise<number | string> {
  return new Promise((resolve) => {
    const req = get(
      { host: address, port: ENVD_PORT, path: '/health', agent: false, timeout: timeoutMs },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { name: 'TimeoutError' })));
    req.on('error', (e) =>
      resolve(e.name === 'Error' ? ((e as NodeJS.ErrnoException).code ?? e.name) : e.name),
    );
  });
}

export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
