// Checkpoints, forks and pause to disk through the sandbox manager, per driver: how long
// a save takes and what it weighs (with 64 MiB written in the sandbox), how long a create
// from it takes next to a create from the template in the same run, and for microVMs
// pause to disk and resume, with QEMU's memory before and after.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkHost,
  type DriverName,
  dataDir,
  execInSandbox,
  ImageStore,
  type SandboxInfo,
  SandboxManager,
} from '@aiva/node';
import { Cgroup, createRuntimes, processPss } from '@aiva/node/testkit';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const recipesDir = new URL('../../../images', import.meta.url).pathname;
const envdDir = new URL('../../../packages/envd/dist/guest', import.meta.url).pathname;
const N: Record<'container' | 'qemu-microvm', number> = { container: 10, 'qemu-microvm': 5 };
const SIZE = { memoryMiB: 256, vcpus: 1 };

const p50 = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

/** PSS of every process in the sandbox's cgroup, in bytes (0 when nothing runs there). */
async function sandboxPss(id: string): Promise<number> {
  let total = 0;
  for (const pid of await (await Cgroup.at(`aiva/${id}`)).pids()) total += (await processPss(pid)) ?? 0;
  return total;
}

async function driverRows(m: SandboxManager, driver: 'container' | 'qemu-microvm'): Promise<BenchRow[]> {
  const n = N[driver];
  const detail = `n=${n}, ${SIZE.vcpus} vCPU, ${SIZE.memoryMiB} MiB`;
  const src = await m.create(SIZE);
  const run = (s: SandboxInfo, cmd: string) =>
    execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user: 'root' });
  await run(src, 'head -c 64M /dev/urandom > /root/data && sync');
  const saves: number[] = [];
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const [c, ms] = await timed(() => m.checkpoint(src.id, `bench-${i}`));
    saves.push(ms);
    bytes = c.bytes;
  }
  const fromTemplate: number[] = [];
  const fromCheckpoint: number[] = [];
  for (let i = 0; i < n; i++) {
    const [a, aMs] = await timed(() => m.create(SIZE));
    fromTemplate.push(aMs);
    await m.kill(a.id);
    const [b, bMs] = await timed(() => m.create({ fromCheckpoint: `bench-${i}` }));
    fromCheckpoint.push(bMs);
    await m.kill(b.id);
  }
  for (let i = 0; i < n; i++) await m.removeCheckpoint(`bench-${i}`);
  const rows: BenchRow[] = [
    { metric: `${driver} checkpoint p50`, value: round(p50(saves), 1), unit: 'ms', detail },
    { metric: `${driver} checkpoint size`, value: round(bytes / 2 ** 20, 1), unit: 'MiB', detail },
    { metric: `${driver} create from template p50`, value: round(p50(fromTemplate), 1), unit: 'ms', detail },
    {
      metric: `${driver} create from checkpoint p50`,
      value: round(p50(fromCheckpoint), 1),
      unit: 'ms',
      detail,
    },
    {
      metric: `${driver} from checkpoint / from template (p50)`,
      value: round(p50(fromCheckpoint) / p50(fromTemplate), 2),
      unit: '×',
      detail,
    },
  ];
  if (driver === 'qemu-microvm') {
    const running = await sandboxPss(src.id);
    const pauses: number[] = [];
    const resumes: number[] = [];
    let paused = Number.NaN;
    for (let i = 0; i < n; i++) {
      pauses.push((await timed(() => m.pause(src.id)))[1]);
      if (i === 0) paused = await sandboxPss(src.id);
      resumes.push((await timed(() => m.resume(src.id)))[1]);
    }
    const mib = (bytes: number) => round(bytes / 2 ** 20, 1);
    rows.push(
      { metric: 'qemu-microvm pause to disk p50', value: round(p50(pauses), 1), unit: 'ms', detail },
      { metric: 'qemu-microvm resume from disk p50', value: round(p50(resumes), 1), unit: 'ms', detail },
      { metric: 'qemu-microvm memory running (PSS)', value: mib(running), unit: 'MiB', detail: 'its cgroup' },
      { metric: 'qemu-microvm memory paused (PSS)', value: mib(paused), unit: 'MiB', detail: 'its cgroup' },
    );
  }
  await m.kill(src.id);
  return rows;
}

export const checkpointBenchmark: Benchmark = {
  name: 'checkpoint',
  description:
    'checkpoint (save) time and size, create from a checkpoint vs from the template, and microVM pause to disk / resume, through the sandbox manager',
  async run() {
    const images = new ImageStore({ home: dataDir(), recipesDir, envdDir });
    await images.ensureTemplate('base');
    await images.ensureKernel();
    const host = await checkHost();
    const home = await mkdtemp(join(tmpdir(), 'aiva-bench-'));
    const rows: BenchRow[] = [];
    try {
      for (const driver of ['container', 'qemu-microvm'] as const satisfies DriverName[]) {
        process.stderr.write(`  ${driver}: checkpoints, creates, pauses ×${N[driver]} …\n`);
        const m = await SandboxManager.open({
          home: join(home, driver),
          images,
          runtimes: createRuntimes(host, { vmSnapshotDir: join(home, 'snapshots') }),
          defaultDriver: driver,
          waitForLock: true,
        });
        try {
          rows.push(...(await driverRows(m, driver)));
        } finally {
          await m.killAll();
          await m.close();
        }
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
    return { rows };
  },
};
