import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout } from './cgroups.js';

/** CPU numbers of a kernel CPU list (`0-3,6`, as cpuset.cpus and /sys/…/online write them). */
export function parseCpuList(text: string): number[] {
  const cpus: number[] = [];
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const [from, to] = part.split('-').map(Number);
    if (from === undefined || !Number.isInteger(from)) continue;
    for (let c = from; c <= (to ?? from); c++) cpus.push(c);
  }
  return cpus;
}

/** The kernel's list syntax for `cpus` (`0-3,6`): what OCI's linux.resources.cpu.cpus takes. */
export function formatCpuList(cpus: number[]): string {
  const sorted = [...new Set(cpus)].sort((a, b) => a - b);
  const ranges: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === (sorted[j] as number) + 1) j++;
    ranges.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return ranges.join(',');
}

/**
 * The CPUs sandboxes can be pinned to: those online that this process may run on (a
 * node confined to some CPUs keeps its sandboxes on them).
 */
export async function hostCpus(): Promise<number[]> {
  const online = parseCpuList(await readFile('/sys/devices/system/cpu/online', 'utf8'));
  const status = await readFile('/proc/self/status', 'utf8');
  const allowed = /^Cpus_allowed_list:\s*(\S+)/m.exec(status)?.[1];
  if (!allowed) return online;
  const mine = new Set(parseCpuList(allowed));
  return online.filter((c) => mine.has(c));
}

/**
 * The cpusets of the sandbox cgroups `<parent>/<id>` among `ids` that exist: where the live
 * containers run, as the kernel has them (the truth after a node restart).
 */
export async function sandboxCpusets(ids: Iterable<string>, parent = 'aiva'): Promise<Map<string, number[]>> {
  const layout = await cgroupLayout();
  const found = new Map<string, number[]>();
  for (const id of ids) {
    const dir =
      layout === 'v2' ? join('/sys/fs/cgroup', parent, id) : join('/sys/fs/cgroup/cpuset', parent, id);
    const text = await readFile(join(dir, 'cpuset.cpus'), 'utf8').catch(() => '');
    const cpus = parseCpuList(text);
    if (cpus.length > 0) found.set(id, cpus);
  }
  return found;
}

/**
 * The `count` CPUs of `available` that the fewest sandboxes are pinned to (`load`: CPU →
 * sandboxes on it), lower numbers first among equals; all of them when there are fewer.
 */
export function leastUsedCpus(available: number[], load: Map<number, number>, count: number): number[] {
  return [...available]
    .sort((a, b) => (load.get(a) ?? 0) - (load.get(b) ?? 0) || a - b)
    .slice(0, Math.max(1, count))
    .sort((a, b) => a - b);
}

/**
 * Which host CPUs each container sandbox is pinned to (its cpuset), so that what counts
 * CPUs by affinity inside (nproc, sched_getaffinity, os.availableParallelism()) finds
 * `vcpus`, and sandboxes spread over the host: a new one gets the CPUs that the fewest
 * others are on. The CPU quota (cpu.max) still bounds how much of them it uses.
 *
 * Counts are kept in memory. A node that restarts rebuilds them from the cgroups of the
 * sandboxes it adopts (`recover`, from the runtime's `sweep`, which recovery calls with
 * every sandbox the node keeps).
 */
export class CpuPlacement {
  private readonly placed = new Map<string, number[]>();

  constructor(
    private readonly available: () => Promise<number[]> = hostCpus,
    /** Where the sandboxes' cgroups are (HostScope.cgroupParent). */
    private readonly cgroupParent = 'aiva',
  ) {}

  /** Picks `vcpus` CPUs for sandbox `id` (replacing any it had) and counts them as used. */
  async place(id: string, vcpus: number): Promise<number[]> {
    this.placed.delete(id);
    const cpus = leastUsedCpus(await this.available(), this.load(), vcpus);
    this.placed.set(id, cpus);
    return cpus;
  }

  /** Forgets sandbox `id`'s CPUs (it ended). */
  release(id: string): void {
    this.placed.delete(id);
  }

  /** Counts the CPUs of the live sandboxes among `keep` (their cgroups) and forgets the others. */
  async recover(keep: Set<string>): Promise<void> {
    for (const id of this.placed.keys()) if (!keep.has(id)) this.placed.delete(id);
    for (const [id, cpus] of await sandboxCpusets(keep, this.cgroupParent))
      if (!this.placed.has(id)) this.placed.set(id, cpus);
  }

  /** CPU → how many sandboxes are pinned to it. */
  load(): Map<number, number> {
    const load = new Map<number, number>();
    for (const cpus of this.placed.values()) for (const c of cpus) load.set(c, (load.get(c) ?? 0) + 1);
    return load;
  }

  /** The CPUs sandbox `id` is pinned to, if it was placed. */
  cpusOf(id: string): number[] | undefined {
    return this.placed.get(id);
  }
}
