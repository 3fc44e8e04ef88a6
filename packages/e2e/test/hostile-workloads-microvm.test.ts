// Hostile workloads on microVM sandboxes (helpers/hostile-suite.ts): `aiva up --runtime
// qemu-microvm` (TCG here), the workloads a guest kernel answers for itself: its own
// process, memory and disk limits, a spin of its vCPUs, envd and its init killed.
import { hostileServer, hostileSuite } from './helpers/hostile-suite.js';

const server = hostileServer('qemu-microvm');
hostileSuite('qemu-microvm', server, [
  'fork bomb',
  'memory bomb',
  'disk full',
  'cpu spin',
  'ignores SIGTERM',
  'kill -9 envd',
  'kill -9 1',
]);
