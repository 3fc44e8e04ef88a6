import { access, chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout, removeCgroupDir } from '../../host/cgroups.js';
import type { SandboxResources } from '../types.js';

/**
 * The user's share of a container sandbox: a cgroup under the sandbox's, which every
 * command envd starts joins (aiva-exec writes itself into the `cgroup.procs` files bound
 * at USER_CGROUP_DIR in the sandbox). The sandbox's cgroup has the memory, processes and
 * CPU asked for, as a VM has its RAM; the user's has all of it but AGENT_MEMORY_MIB of
 * memory, kept for init and envd (in a VM the kernel and envd likewise take their part
 * of the RAM), and `userPids` processes. So a memory bomb is killed inside the user's
 * cgroup without envd ever being a candidate (no out-of-memory score needed, which some
 * hosts do not let aiva lower), a fork bomb leaves envd room to start commands, and under
 * a CPU spin envd competes with the user's cgroup as one entity, not with each process.
 * LXCFS shows the sandbox's figures (it reads the cgroup of the sandbox's init).
 *
 * cgroup v1 (and hybrid) hosts: a process is in one cgroup per hierarchy, so the user's
 * processes move in the memory, cpu, cpuacct and pids hierarchies only and stay in the
 * sandbox's devices and freezer cgroups (device rules and pause hold for them). On
 * cgroup v2 the device filter is attached to the sandbox's cgroup and a cgroup with
 * processes cannot have controlled children: not done there yet (`supported`).
 */
/** envd (a Node.js process) takes 50–70 MiB; the rest is headroom while the user's is full. */
export const AGENT_MEMORY_MIB = 128;
export const AGENT_PIDS = 64;
/** The user's part of a sandbox's memory: all but the agent's, and at least half. */
export const userMemoryMiB = (memoryMiB: number) =>
  Math.max(Math.floor(memoryMiB / 2), memoryMiB - AGENT_MEMORY_MIB);
/**
 * The user's processes (threads count): one per MiB of the sandbox's memory, from 256 up
 * to the sandbox's limit less the agent's. Measured here (2 cores, cgroup v1): every
 * command's move into the user's cgroup takes kernel locks that a fork bomb spinning at
 * its limit contends, so a neighbour's command stalled up to 22 s with 4032 bomb
 * processes, 3.4 s with 1024 and 0.8–1.9 s with 512. (A VM of 512 MiB gets ~4096 threads
 * from its kernel, but there a fork bomb hurts only itself.)
 */
export const userPids = (memoryMiB: number, sandboxPids: number) =>
  Math.min(sandboxPids - AGENT_PIDS, Math.max(256, memoryMiB));

export const USER_CGROUP_DIR = '/run/aiva/user-cgroup';
const CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids'] as const;
const ROOT = '/sys/fs/cgroup';

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

export class UserCgroup {
  constructor(
    /** The sandbox's cgroup, relative to each hierarchy's root. */
    readonly sandboxPath: string,
  ) {}

  static async supported(): Promise<boolean> {
    return (await cgroupLayout()) !== 'v2';
  }

  private dir(controller: (typeof CONTROLLERS)[number]): string {
    return join(ROOT, controller, this.sandboxPath, 'user');
  }

  /** Makes the cgroup with the sandbox's resources (before the container starts). */
  async create(resources: SandboxResources, maxPids: number): Promise<void> {
    for (const c of CONTROLLERS) await mkdir(this.dir(c), { recursive: true });
    const memory = String(userMemoryMiB(resources.memoryMiB) * 1024 * 1024);
    await writeFile(join(this.dir('memory'), 'memory.limit_in_bytes'), memory);
    // No swap: memory and swap together are the memory (absent without swap accounting).
    const memsw = join(this.dir('memory'), 'memory.memsw.limit_in_bytes');
    if (await exists(memsw)) await writeFile(memsw, memory);
    await writeFile(join(this.dir('cpu'), 'cpu.cfs_period_us'), '100000');
    await writeFile(join(this.dir('cpu'), 'cpu.cfs_quota_us'), String(resources.vcpus * 100_000));
    await writeFile(join(this.dir('pids'), 'pids.max'), String(maxPids));
  }

  /**
   * Makes its `cgroup.procs` files writable by host user `uid` (a sandbox's root in a
   * user namespace): cgroup v1 lets a process whose euid is the file's writer move itself.
   */
  async giveTo(uid: number): Promise<void> {
    for (const c of CONTROLLERS) await chown(join(this.dir(c), 'cgroup.procs'), uid, uid);
  }

  /** Bind mounts of its `cgroup.procs` files into the sandbox, writable. */
  mounts(): { destination: string; type: string; source: string; options: string[] }[] {
    // cpu and cpuacct may be one hierarchy (cpu,cpuacct): the same file twice is harmless.
    return CONTROLLERS.map((c) => ({
      destination: `${USER_CGROUP_DIR}/${c}`,
      type: 'bind',
      source: join(this.dir(c), 'cgroup.procs'),
      options: ['bind', 'rw', 'nosuid', 'noexec', 'nodev'],
    }));
  }

  /** Kills what is left in it and removes it (before the sandbox's cgroup). Idempotent. */
  async destroy(): Promise<void> {
    const procs = join(this.dir('pids'), 'cgroup.procs');
    for (let attempt = 0; attempt < 100; attempt++) {
      const pids = (await readFile(procs, 'utf8').catch(() => '')).split('\n').filter(Boolean);
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const c of CONTROLLERS) await removeCgroupDir(this.dir(c));
  }
}
