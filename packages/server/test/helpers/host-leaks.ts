import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { type HostResources, hostResources, leftoverHostResources } from '@aiva/node';

/** Fails the test file if it leaves sandbox resources on the host (processes, mounts, namespaces …). */
// `after` hooks run in the order they were added: register this after the hooks that clean up.
export function checkHostLeaks(): void {
  let baseline: HostResources;
  before(async () => {
    baseline = await hostResources();
  });
  after(async () => {
    assert.deepEqual(
      await leftoverHostResources(baseline),
      {},
      'the tests left sandbox resources behind on the host',
    );
  });
}
