// @aiva/node/testkit: for the tests and benchmarks of every package, never for a
// process. The lab (a test internet, the host-leak check) and the node's parts that
// benchmarks drive directly to measure the raw floor under the node (a bare runc or
// QEMU start, a namespace, a snapshot restore).
export { waitForEnvd } from './envd/envd-http.js';
export { Cgroup } from './host/cgroups.js';
export { processPss } from './host/proc.js';
export { checkHostLeaks } from './lab/host-leaks.js';
export {
  type Compression,
  type Descriptor,
  type Layer,
  LayoutWriter,
  tarOf,
} from './lab/oci-layout-writer.js';
export { type Records, TestInternet } from './lab/test-internet.js';
export { push as pushImage, startRegistry, type TestRegistry } from './lab/test-registry.js';
export { AddressPool } from './network/address-pool.js';
export { createSandboxNetwork, removeLink } from './network/sandbox-network.js';
export { SandboxNetworking } from './network/sandbox-networking.js';
export { ociConfig } from './runtime/container/oci-config.js';
export { createDiskOverlay } from './runtime/qemu/disk-overlay.js';
export { qemuArgs } from './runtime/qemu/qemu-args.js';
export { QmpClient } from './runtime/qemu/qmp-client.js';
export { restoreFromSnapshot } from './runtime/qemu/vm-snapshot.js';
export { createRuntimes } from './runtime/select.js';
export type { RuntimeSpec } from './runtime/types.js';
