import { access, mkdir, readdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const ROOT = '/sys/fs/cgroup';

/**
 * How this host mounts cgroups: `v2` (unified only), `hybrid` (v1 controllers plus a
 * cgroup2 at /sys/fs/cgroup/unified) or `v1`.
 */
export type CgroupLayout = 'v2' | 'hybrid' | 'v1';

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

export async function cgroupLayout(): Promise<CgroupLayout> {
  if (await exists(join(ROOT, 'cgroup.controllers'))) return 'v2';
  if (await exists(join(ROOT, 'unified', 'cgroup.controllers'))) return 'hybrid';
  return 'v1';
}

/** Controllers enabled on the cgroup2 hierarchy of a hybrid host (crun refuses any). */
export async function hybridV2Controllers(): Promise<string[]> {
  const text = await readFile(join(ROOT, 'unified', 'cgroup.controllers'), 'utf8').catch(() => '');
  return text.split(/\s+/).filter(Boolean);
}

export interface CgroupLimits {
  memoryBytes: number;
  /** CPU bandwidth in CPUs (1.5 = one and a half cores). */
  cpus: number;
  pids: number;
}

export interface CgroupUsage {
  cpuUsageUs: number;
  memoryBytes: number;
  memoryLimitBytes: number;
  pids: number;
}

const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'pids', 'freezer'] as const;

/**
 * One cgroup, named by a path relative to the hierarchy root (e.g. `aiva/<id>`), in
 * every controller aiva uses. Works on v1/hybrid (a directory per controller) and v2.
 */
export class Cgroup {
  private constructor(
    readonly path: string,
    readonly layout: CgroupLayout,
  ) {}

  static async at(path: string): Promise<Cgroup> {
    return new Cgroup(path, await cgroupLayout());
  }

  /** The directories that make up this cgroup. */
  dirs(): string[] {
    if (this.layout === 'v2') return [join(ROOT, this.path)];
    return V1_CONTROLLERS.map((c) => join(ROOT, c, this.path));
  }

  private dir(controller: (typeof V1_CONTROLLERS)[number]): string {
    return this.layout === 'v2' ? join(ROOT, this.path) : join(ROOT, controller, this.path);
  }

  /** Creates the cgroup with `limits`. */
  async create(limits: CgroupLimits): Promise<void> {
    if (this.layout === 'v2') {
      // Controllers must be delegated by every ancestor.
      const parts = this.path.split('/');
      for (let i = 0; i < parts.length; i++) {
        const parent = join(ROOT, ...parts.slice(0, i));
        await writeFile(join(parent, 'cgroup.subtree_control'), '+memory +cpu +pids').catch(() => {});
        await mkdir(join(parent, parts[i] ?? ''), { recursive: true });
      }
      const d = join(ROOT, this.path);
      await writeFile(join(d, 'memory.max'), String(limits.memoryBytes));
      await writeFile(join(d, 'memory.swap.max'), '0').catch(() => {});
      await writeFile(join(d, 'cpu.max'), `${Math.round(limits.cpus * 100_000)} 100000`);
      await writeFile(join(d, 'pids.max'), String(limits.pids));
      return;
    }
    for (const d of this.dirs()) await mkdir(d, { recursive: true });
    await writeFile(join(this.dir('memory'), 'memory.limit_in_bytes'), String(limits.memoryBytes));
    await writeFile(join(this.dir('cpu'), 'cpu.cfs_period_us'), '100000');
    await writeFile(join(this.dir('cpu'), 'cpu.cfs_quota_us'), String(Math.round(limits.cpus * 100_000)));
    await writeFile(join(this.dir('pids'), 'pids.max'), String(limits.pids));
  }

  /** The files a process writes its pid to, to join this cgroup. */
  procsFiles(): string[] {
    return this.dirs().map((d) => join(d, 'cgroup.procs'));
  }

  /**
   * Wraps `argv` so that the process joins this cgroup before it execs: the shell
   * writes its own pid to every cgroup.procs, then becomes the command.
   */
  wrap(argv: string[]): string[] {
    return [
      'sh',
      '-c',
      `echo $$ | tee ${this.procsFiles().join(' ')} >/dev/null && exec "$@"`,
      'sh',
      ...argv,
    ];
  }

  async pids(): Promise<number[]> {
    const text = await readFile(join(this.dir('pids'), 'cgroup.procs'), 'utf8').catch(() => '');
    return text.split('\n').filter(Boolean).map(Number);
  }

  async usage(): Promise<CgroupUsage> {
    const read = (file: string) => readFile(file, 'utf8').catch(() => '');
    if (this.layout === 'v2') {
      const d = join(ROOT, this.path);
      const cpuStat = await read(join(d, 'cpu.stat'));
      const max = (await read(join(d, 'memory.max'))).trim();
      return {
        cpuUsageUs: Number(/usage_usec (\d+)/.exec(cpuStat)?.[1] ?? 0),
        memoryBytes: Number((await read(join(d, 'memory.current'))).trim() || 0),
        memoryLimitBytes: max === 'max' || max === '' ? 0 : Number(max),
        pids: Number((await read(join(d, 'pids.current'))).trim() || 0),
      };
    }
    return {
      cpuUsageUs: Math.round(
        Number((await read(join(this.dir('cpuacct'), 'cpuacct.usage'))).trim() || 0) / 1000,
      ),
      memoryBytes: Number((await read(join(this.dir('memory'), 'memory.usage_in_bytes'))).trim() || 0),
      memoryLimitBytes: Number((await read(join(this.dir('memory'), 'memory.limit_in_bytes'))).trim() || 0),
      pids: Number((await read(join(this.dir('pids'), 'pids.current'))).trim() || 0),
    };
  }

  /** The limits in force, read back from the kernel (`swapBytes`: swap allowed beyond memory). */
  async limits(): Promise<CgroupLimits & { swapBytes: number }> {
    const read = async (controller: (typeof V1_CONTROLLERS)[number], file: string) => {
      const t = (await readFile(join(this.dir(controller), file), 'utf8')).trim();
      return t === 'max' || t === '-1' ? Number.POSITIVE_INFINITY : Number(t.split(' ')[0]);
    };
    if (this.layout === 'v2') {
      const [quota, period] = (await readFile(join(ROOT, this.path, 'cpu.max'), 'utf8')).trim().split(' ');
      return {
        memoryBytes: await read('memory', 'memory.max'),
        swapBytes: await read('memory', 'memory.swap.max').catch(() => 0),
        cpus: quota === 'max' ? Number.POSITIVE_INFINITY : Number(quota) / Number(period),
        pids: await read('pids', 'pids.max'),
      };
    }
    const memoryBytes = await read('memory', 'memory.limit_in_bytes');
    // Without swap accounting there is no memsw file: swap is then unlimited.
    const memsw = await read('memory', 'memory.memsw.limit_in_bytes').catch(() => Number.POSITIVE_INFINITY);
    const quota = await read('cpu', 'cpu.cfs_quota_us');
    return {
      memoryBytes,
      swapBytes: memsw - memoryBytes,
      cpus: quota / (await read('cpu', 'cpu.cfs_period_us')),
      pids: await read('pids', 'pids.max'),
    };
  }

  /** Times the memory limit was hit and a process was killed for it (v1: under_oom/oom_kill). */
  async oomKills(): Promise<number> {
    const file =
      this.layout === 'v2'
        ? join(ROOT, this.path, 'memory.events')
        : join(this.dir('memory'), 'memory.oom_control');
    const text = await readFile(file, 'utf8').catch(() => '');
    return Number(/oom_kill (\d+)/.exec(text)?.[1] ?? 0);
  }

  /** Kills every process in the cgroup and removes it. Idempotent. */
  async destroy(): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt++) {
      const pids = await this.pids();
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const d of this.dirs()) await removeCgroupDir(d);
  }

  async exists(): Promise<boolean> {
    return exists(this.dirs()[0] ?? '');
  }
}

/** Names of the child cgroups of `parent` (e.g. `aiva`), from the first hierarchy that has it. */
export async function childCgroups(parent: string): Promise<string[]> {
  const layout = await cgroupLayout();
  const dir = layout === 'v2' ? join(ROOT, parent) : join(ROOT, 'pids', parent);
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isDirectory()).map((e) => e.name);
}

/**
 * Removes cgroup `path` (relative to the hierarchy roots) in every hierarchy where it is
 * an empty directory (no processes, no children): a node's parent of its sandboxes'
 * cgroups, once they are gone. Left where it still has children.
 */
export async function removeEmptyCgroup(path: string): Promise<void> {
  const layout = await cgroupLayout();
  const hierarchies =
    layout === 'v2'
      ? [ROOT]
      : (await readdir(ROOT, { withFileTypes: true }).catch(() => []))
          .filter((e) => e.isDirectory())
          .map((e) => join(ROOT, e.name));
  for (const h of hierarchies) await rmdir(join(h, path)).catch(() => {});
}

/** Removes an empty cgroup directory (whose processes are gone or going); absent is fine. */
export async function removeCgroupDir(dir: string): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await rmdir(dir);
      return;
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      if (code !== 'EBUSY' || attempt === 49) throw new Error(`cannot remove cgroup ${dir}: ${code}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}
