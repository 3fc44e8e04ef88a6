import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { type HostResources, hostResources, leftoverHostResources } from '../../src/index.js';

/**
 * Registers hooks that record the host's sandbox resources before the test file and
 * fail it if any are left after: processes, mounts, namespaces, links, cgroups,
 * container state, aiva's nftables table, IPv4 forwarding, test internets.
 */
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
