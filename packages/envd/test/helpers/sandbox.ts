import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { filesystem as fsp, process as pp } from '@aiva/protocol';
import { type Client, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { Sandbox } from 'e2b';
import { ENVD_URL, GuestSandbox, leftovers, type SandboxOptions } from './harness.js';

/** The SDK's debug mode: no control plane, envd at localhost:49983. */
process.env.E2B_DEBUG = 'true';

/**
 * A sandbox for the whole test file: started before its tests (and initialised like the
 * node agent does for the base template: default user `user`), stopped after them, and
 * checked to leave nothing behind.
 */
export function useSandbox(
  options: SandboxOptions & { init?: Record<string, unknown> } = {},
): () => GuestSandbox {
  let sandbox: GuestSandbox | undefined;
  before(async () => {
    sandbox = await GuestSandbox.start(options);
    const res = await sandbox.init(options.init ?? { defaultUser: 'user', defaultWorkdir: '/home/user' });
    assert.equal(res.status, 204, await res.text());
  });
  after(async () => {
    if (!sandbox) return;
    await sandbox.stop();
    assert.deepEqual(await leftovers(sandbox), []);
  });
  return () => {
    if (!sandbox) throw new Error('the sandbox is not running');
    return sandbox;
  };
}

/** The SDK connected to envd the way `Sandbox.connect` does in debug mode. */
export function sdk(): Promise<Sandbox> {
  return Sandbox.connect('debug_sandbox_id', { debug: true });
}

/**
 * The SDK as it is for a secured sandbox (what `Sandbox.create` returns when the control
 * plane issued an envd access token). Uses the SDK's own constructor, as connect() does.
 */
export function sdkWithToken(envdAccessToken: string): Sandbox {
  const SandboxCtor = Sandbox as unknown as new (opts: Record<string, unknown>) => Sandbox;
  return new SandboxCtor({
    sandboxId: 'debug_sandbox_id',
    envdVersion: '0.6.4',
    envdAccessToken,
    debug: true,
  });
}

/** A plain Connect client of envd's services (for calls the JS SDK does not make). */
export function rawClients(headers: Record<string, string> = {}): {
  process: Client<typeof pp.Process>;
  filesystem: Client<typeof fsp.Filesystem>;
} {
  const transport = createConnectTransport({
    baseUrl: ENVD_URL,
    httpVersion: '1.1',
    useBinaryFormat: false,
    interceptors: [
      (next) => (req) => {
        for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
        return next(req);
      },
    ],
  });
  return {
    process: createClient(pp.Process, transport),
    filesystem: createClient(fsp.Filesystem, transport),
  };
}

/** Resolves when `check` returns true (polling; for state changes, not for timings). */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  ms = 10_000,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
