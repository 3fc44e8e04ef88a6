import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { after, before } from 'node:test';
import { lockFile } from '@aiva/node';
// What sandboxes take on a host: the node knows (its checkHostLeaks compares the same).
import {
  type HostResources,
  hostResources,
  leftoverHostResources,
} from '@aiva/node/internal/host/host-resources';

/** Runs `fn` while holding this host's node lock (the one every aiva node holds while it runs). */
async function withoutNodes<T>(fn: () => Promise<T>): Promise<T> {
  await mkdir('/run/aiva', { recursive: true });
  const lock = await lockFile('/run/aiva/node.lock', { signal: AbortSignal.timeout(15 * 60_000) });
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/**
 * The node's `checkHostLeaks` for CLI tests: the host's sandbox resources after the file
 * must be those before it. Each CLI command opens this host's node and closes it again,
 * so other test runs on the host may hold the node (and sandboxes of their own) in
 * between: both snapshots are taken while holding the node lock, when no other node runs.
 * Call it after registering the hooks that clean up. (One hook each: Node 20 runs a
 * file's top-level `before` hooks concurrently.)
 */
export function checkHostLeaksBetweenNodes(): void {
  let baseline: HostResources;
  before(async () => {
    baseline = await withoutNodes(() => hostResources());
  });
  after(async () => {
    const left = await withoutNodes(() => leftoverHostResources(baseline));
    // IPv4 forwarding is one value: that the host no longer forwards for sandboxes that
    // ran at the start (someone else's) is no leak; forwarding left on by aiva would be.
    if (left.ipForward?.every((v) => !v.includes('aiva saved'))) delete left.ipForward;
    assert.deepEqual(left, {}, 'the tests left sandbox resources behind on the host');
  });
}
