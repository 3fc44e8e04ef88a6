import { spawn } from 'node:child_process';
import { access, open, readFile, rm } from 'node:fs/promises';
import { Cgroup, type CgroupLimits } from '../host/cgroups.js';
import { isSameProcess, processStartTime, signalProcess, waitForExit } from '../host/proc.js';
import { RuntimeError, type RuntimeSpec, type SandboxRef, sandboxCgroupPath } from './types.js';

/** The cgroup (relative to the hierarchy root) of a sandbox's VMM process. */
export const vmmCgroupPath = (spec: SandboxRef) => sandboxCgroupPath(spec);

export async function createVmmCgroup(spec: RuntimeSpec, limits: CgroupLimits): Promise<void> {
  await (await Cgroup.at(vmmCgroupPath(spec))).create(limits);
}

export interface VmmLaunch {
  argv: string[];
  /** Where the VMM's own stdout and stderr go. */
  log: string;
  /** The control socket the VMM opens once it is up. */
  socket: string;
  /** File descriptors the VMM inherits as its fds 3, 4, … (a migration stream, disk files). */
  fds?: number[];
  signal?: AbortSignal;
}

/**
 * Starts a VMM (QEMU, Firecracker) confined to the sandbox's cgroup and network
 * namespace, detached from us so that it outlives a node restart, and waits until it
 * opens its control socket. The error says what the VMM printed if it dies first.
 */
export async function launchVmm(
  spec: RuntimeSpec,
  launch: VmmLaunch,
): Promise<{ pid: number; pidStartTime: number }> {
  const cgroup = await Cgroup.at(vmmCgroupPath(spec));
  // A VMM that ran here before (a VM paused to disk) left its socket: it would pass for the new one's.
  await rm(launch.socket, { force: true });
  // Join the cgroup, then the network namespace, then become the VMM: one pid throughout.
  const argv = cgroup.wrap(['nsenter', `--net=/run/netns/${spec.network.netns}`, '--', ...launch.argv]);
  const log = await open(launch.log, 'a');
  let pid: number | undefined;
  try {
    const child = spawn(argv[0] ?? 'sh', argv.slice(1), {
      detached: true,
      stdio: ['ignore', log.fd, log.fd, ...(launch.fds ?? [])],
    });
    child.on('error', () => {});
    child.unref();
    pid = child.pid;
  } finally {
    await log.close();
  }
  const name = launch.argv[0] ?? 'the VMM';
  const fail = async (why: string): Promise<never> => {
    const printed = (await readFile(launch.log, 'utf8').catch(() => '')).trim();
    throw new RuntimeError(`${name} ${why}${printed ? `: ${printed.slice(-2000)}` : ''}`);
  };
  if (!pid) return fail('could not be started');
  const pidStartTime = await processStartTime(pid);
  if (pidStartTime === undefined) return fail('exited at once');
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (launch.signal?.aborted) return fail('start was interrupted');
    if (!(await isSameProcess(pid, pidStartTime))) return fail('exited during start-up');
    const up = await access(launch.socket).then(
      () => true,
      () => false,
    );
    if (up) return { pid, pidStartTime };
    if (Date.now() > deadline) return fail(`did not open ${launch.socket} within 10 s`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Kills the VMM process (if still the same process) and waits for it to end; its cgroup stays. */
export async function killVmmProcess(state: { pid: number; pidStartTime: number }): Promise<void> {
  await signalProcess(state.pid, state.pidStartTime, 'SIGKILL');
  if (!(await waitForExit(state.pid, state.pidStartTime, 5000))) {
    throw new RuntimeError(`process ${state.pid} did not exit after SIGKILL`);
  }
}

/** Kills every process in the sandbox's VMM cgroup and waits for them to end; the cgroup stays. */
export async function killVmmProcessesIn(spec: SandboxRef): Promise<void> {
  const cgroup = await Cgroup.at(vmmCgroupPath(spec));
  for (const pid of await cgroup.pids()) {
    const startTime = await processStartTime(pid);
    if (startTime !== undefined) await killVmmProcess({ pid, pidStartTime: startTime });
  }
}

/** Kills the VMM (if still the same process) and removes its cgroup with anything left in it. */
export async function killVmm(spec: SandboxRef, state: { pid: number; pidStartTime: number } | undefined) {
  if (state) {
    await signalProcess(state.pid, state.pidStartTime, 'SIGKILL');
    await waitForExit(state.pid, state.pidStartTime, 5000);
  }
  const cgroup = await Cgroup.at(vmmCgroupPath(spec));
  if (await cgroup.exists()) await cgroup.destroy();
}

export async function vmmStats(spec: SandboxRef) {
  const usage = await (await Cgroup.at(vmmCgroupPath(spec))).usage();
  return {
    cpuUsageUs: usage.cpuUsageUs,
    memoryBytes: usage.memoryBytes,
    memoryLimitBytes: usage.memoryLimitBytes,
    pids: usage.pids,
  };
}
