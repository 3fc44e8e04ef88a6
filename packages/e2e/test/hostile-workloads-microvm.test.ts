// Hostile workloads on microVM sandboxes (helpers/hostile-suite.ts): `aiva up --runtime
// qemu-microvm` (TCG here), the workloads a guest kernel answers for itself: its own
// process, memory and disk limits, a spin of its vCPUs, envd and its init killed, and
// the host-side floods (stdout through envd, 1000 ports, its DNS forwarder, the proxy).
// Left out: inodes (creating ~260 000 files under TCG takes minutes) and 10 000 processes
// (2–3 minutes of guest forks under TCG; the fork bomb already meets the guest's process
// limit, and containers run it against the host's).
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
  'stdout flood',
  '1000 ports',
  'dns flood',
  'proxy flood',
]);
