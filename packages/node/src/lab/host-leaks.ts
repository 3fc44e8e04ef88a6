import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { type HostResources, hostResources, leftoverHostResources } from '../host/host-resources.js';

/**
 * For test files (of any package): registers hooks that record the host's sandbox
 * resources before the file's tests and fail the file if any are left after: processes,
 * mounts, namespaces, links, cgroups, container state, aiva's nftables table, IPv4
 * forwarding, test internets. `after` hooks run in the order they were added: call this
 * after registering the hooks that clean up.
 */
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
