import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { lockFile } from '../host/file-lock.js';
import { type HostResources, hostResources, leftoverHostResources } from '../host/host-resources.js';
import { NODE_LOCK_DIR } from '../sandbox/sandbox-options.js';

/** Runs `fn` while holding this host's node lock (the one every aiva node holds while it runs). */
async function withoutNodes<T>(fn: () => Promise<T>): Promise<T> {
  await mkdir(NODE_LOCK_DIR, { recursive: true });
  const lock = await lockFile(join(NODE_LOCK_DIR, 'node.lock'), { signal: AbortSignal.timeout(15 * 60_000) });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * For test files (of any package): registers hooks that record the host's sandbox
 * resources before the file's tests and fail the file if any are left after: processes,
 * mounts, namespaces, links, cgroups, container state, aiva's nftables table, IPv4
 * forwarding, test internets. `after` hooks run in the order they were added: call this
 * after registering the hooks that clean up.
 *
 * `betweenNodes`: for files whose every step opens this host's node and closes it again
 * (the CLI's), so that other test runs on the host may hold the node, and sandboxes of
 * their own, in between: both snapshots are taken holding the node lock, when no other
 * node runs. (Not for files that hold a node through their hooks: that would wait for
 * itself.) The host no longer forwarding for someone else's sandboxes is then no leak.
 */
export function checkHostLeaks(options: { betweenNodes?: boolean } = {}): void {
  const snapshot = <T>(fn: () => Promise<T>) => (options.betweenNodes ? withoutNodes(fn) : fn());
  let baseline: HostResources;
  // One hook each: Node 20 runs a file's top-level `before` hooks concurrently.
  before(async () => {
    baseline = await snapshot(() => hostResources());
  });
  after(async () => {
    const left = await snapshot(() => leftoverHostResources(baseline));
    if (options.betweenNodes && left.ipForward?.every((v) => !v.includes('aiva saved')))
      delete left.ipForward;
    assert.deepEqual(left, {}, 'the tests left sandbox resources behind on the host');
  });
}
