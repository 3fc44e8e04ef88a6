import { Cgroup, processPss } from '@aiva/node/testkit';
import { round } from './bench.js';

/**
 * The memory a sandbox holds on the host: the PSS of the processes in its cgroup
 * (a container's, or a microVM's QEMU), in MiB; 0 when it has none, or no cgroup.
 */
export async function sandboxPssMiB(id: string): Promise<number> {
  let total = 0;
  try {
    for (const pid of await (await Cgroup.at(`aiva/${id}`)).pids()) total += (await processPss(pid)) ?? 0;
  } catch {
    return 0;
  }
  return round(total / 2 ** 20, 1);
}
