import { Cgroup, processPss } from '@aiva/node/testkit';
import { round } from './bench.js';

/**
 * The memory a sandbox holds on the host: the PSS of the processes in its cgroup (a
 * microVM's QEMU; a container's init and envd, and in its `user` child what envd started
 * for the user: commands, a template's start command), in MiB; 0 when it has none.
 */
export async function sandboxPssMiB(id: string): Promise<number> {
  let total = 0;
  const pids = new Set<number>();
  for (const path of [`aiva/${id}`, `aiva/${id}/user`]) {
    for (const pid of await (await Cgroup.at(path)).pids().catch(() => [] as number[])) pids.add(pid);
  }
  for (const pid of pids) total += (await processPss(pid)) ?? 0;
  return round(total / 2 ** 20, 1);
}
