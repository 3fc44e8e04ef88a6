// VM templating of qemu-microvm: create→envd-ready through the sandbox manager with a
// cold boot and restored from the template's snapshot, next to the raw floor of a restore
// (QEMU spawned with -incoming on the snapshot, migrate-incoming, cont, until envd's
// /health answers, without the manager), and idle memory (PSS) per clone vs per cold VM.

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkHost,
  type DriverName,
  dataDir,
  ImageStore,
  lockFile,
  SandboxManager,
  type SandboxRuntime,
} from '@aiva/node';
import {
  AddressPool,
  Cgroup,
  createDiskOverlay,
  createRuntimes,
  createSandboxNetwork,
  processPss,
  QmpClient,
  qemuArgs,
  type RuntimeSpec,
  removeLink,
  restoreFromSnapshot,
  waitForEnvd,
} from '@aiva/node/testkit';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const recipesDir = new URL('../../../images', import.meta.url).pathname;
const envdDir = new URL('../../../packages/envd/dist/guest', import.meta.url).pathname;

const N = 5;
const IDLE = 3;
const SIZE = { memoryMiB: 256, vcpus: 1 };

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const p50 = (xs: number[]) => quantile(sorted(xs), 0.5);
const p95 = (xs: number[]) => quantile(sorted(xs), 0.95);

/** Spawn→envd-ready is timed up to the same /health answer the sandbox manager waits for. */
const healthy = (address: string, timeoutMs: number) => waitForEnvd(address, { timeoutMs });

async function createTimes(m: SandboxManager, n: number, expect: 'boot' | 'snapshot'): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const s = await m.create(SIZE);
    ms.push(performance.now() - t);
    if (s.runtime?.startedFrom !== expect) {
      throw new Error(`expected a ${expect} start, got ${JSON.stringify(s.runtime)}`);
    }
    await m.kill(s.id);
  }
  return ms;
}

/** Mean PSS of the QEMU processes of `n` idle sandboxes, all alive at once, after 5 s. */
async function idlePss(m: SandboxManager, n: number): Promise<number> {
  const made = [];
  for (let i = 0; i < n; i++) made.push(await m.create(SIZE));
  await new Promise((r) => setTimeout(r, 5000));
  let total = 0;
  for (const s of made) {
    for (const pid of await (await Cgroup.at(`aiva/${s.id}`)).pids()) total += (await processPss(pid)) ?? 0;
  }
  for (const s of made) await m.kill(s.id);
  return total / n;
}

/** The raw restore floor: QEMU on the snapshot's files, -incoming, restore, cont, until envd answers. */
async function rawRestore(spec: RuntimeSpec, snapshotDir: string, n: number, accel: 'kvm' | 'tcg') {
  const disk = join(spec.dir, 'disk.qcow2');
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    await rm(disk, { force: true });
    await createDiskOverlay(
      disk,
      { file: join(snapshotDir, 'disk.qcow2'), format: 'qcow2' },
      spec.resources.diskMiB,
    );
    const qmpSocket = join(spec.dir, `qmp-${i}.sock`);
    const args = qemuArgs(spec, { disk, qmpSocket }, accel, {
      memoryFile: { path: join(snapshotDir, 'memory'), share: false },
      incoming: true,
    });
    const state = await open(join(snapshotDir, 'state'), 'r');
    const t = performance.now();
    const qemu = spawn(
      'nsenter',
      [`--net=/run/netns/${spec.network.netns}`, '--', 'qemu-system-x86_64', ...args],
      {
        stdio: ['ignore', 'ignore', 'inherit', state.fd],
      },
    );
    await state.close();
    try {
      let qmp: QmpClient | undefined;
      for (let tries = 0; !qmp; tries++) {
        qmp = await QmpClient.connect(qmpSocket).catch(async (e: Error) => {
          if (tries > 2000) throw e;
          await new Promise((r) => setTimeout(r, 1));
          return undefined;
        });
      }
      try {
        await restoreFromSnapshot(qmp, { ignoreShared: true });
      } finally {
        qmp.close();
      }
      await healthy(spec.network.address, 30_000);
      ms.push(performance.now() - t);
    } finally {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
      await rm(qmpSocket, { force: true });
    }
  }
  return ms;
}

export const vmSnapshotBenchmark: Benchmark = {
  name: 'vm-snapshot',
  description:
    'qemu-microvm create→envd-ready, cold boot vs restored from a VM snapshot, the raw restore floor, PSS per clone',
  async run() {
    const images = new ImageStore({ home: dataDir(), recipesDir, envdDir });
    const template = await images.ensureDisk(await images.ensureTemplate('base'));
    const kernel = await images.ensureKernel();
    const host = await checkHost();
    const qemu = host.checks.find((c) => c.driver === 'qemu-microvm' && c.available);
    if (!qemu) throw new Error('qemu-microvm does not run on this host');
    const accel = qemu.variant as 'kvm' | 'tcg';
    const home = await mkdtemp(join(tmpdir(), 'aiva-bench-'));
    const snapshots = join(home, 'snapshots');
    const rows: BenchRow[] = [];
    const open_ = async (name: string, runtimes: Map<DriverName, SandboxRuntime>) =>
      SandboxManager.open({
        home: join(home, name),
        images,
        runtimes,
        defaultDriver: 'qemu-microvm',
        waitForLock: true,
      });
    try {
      process.stderr.write(`  cold boot ×${N} …\n`);
      let m = await open_('cold', createRuntimes(host));
      let cold: number[];
      let coldPss: number;
      try {
        cold = await createTimes(m, N, 'boot');
        coldPss = await idlePss(m, 2);
      } finally {
        await m.killAll();
        await m.close();
      }

      process.stderr.write(`  snapshot build, then restore ×${N} …\n`);
      m = await open_('snap', createRuntimes(host, { vmSnapshotDir: snapshots }));
      let first: number;
      let restored: number[];
      let clonePss: number;
      try {
        const t = performance.now();
        const s = await m.create(SIZE);
        first = performance.now() - t;
        await m.kill(s.id);
        restored = await createTimes(m, N, 'snapshot');
        clonePss = await idlePss(m, IDLE);
      } finally {
        await m.killAll();
        await m.close();
      }
      const snapDir = (await readdir(snapshots)).find((d) => d !== 'locks' && d !== 'tmp');
      if (!snapDir) throw new Error('no snapshot was made');
      const manifest = JSON.parse(await readFile(join(snapshots, snapDir, 'snapshot.json'), 'utf8'));

      process.stderr.write(`  raw restore ×${N} …\n`);
      const pool = new AddressPool('10.12.0.0/16');
      const link = pool.allocate();
      const dir = join(home, 'rawrestore');
      await mkdir(dir, { recursive: true });
      // Holding the node lock: no node (nor another benchmark's or test's) runs meanwhile.
      const lock = await lockFile('/run/aiva/node.lock');
      let raw: number[];
      try {
        const network = await createSandboxNetwork(link, 'tap');
        try {
          raw = await rawRestore(
            {
              id: 'rawrestore',
              dir,
              template,
              kernel,
              resources: { ...SIZE, diskMiB: template.diskSizeMiB },
              network,
              hostname: 'sandbox',
              consoleLog: join(dir, 'console.log'),
            },
            join(snapshots, snapDir),
            N,
            accel,
          );
        } finally {
          await removeLink(link.slot, network.netns);
          pool.release(link.slot);
        }
      } finally {
        await lock.release();
      }

      const detail = `n=${N}, 1 vCPU, 256 MiB, ${accel}`;
      const ms = (metric: string, xs: number[]) => [
        { metric: `${metric} p50`, value: round(p50(xs), 1), unit: 'ms', detail },
        { metric: `${metric} p95`, value: round(p95(xs), 1), unit: 'ms', detail },
      ];
      rows.push(
        ...ms('cold boot create→envd-ready', cold),
        ...ms('restored create→envd-ready', restored),
        ...ms('raw QEMU restore spawn→envd-ready', raw),
        {
          metric: 'speed-up cold/restored (p50)',
          value: round(p50(cold) / p50(restored), 1),
          unit: '×',
          detail,
        },
        {
          metric: 'first create (snapshot build + restore)',
          value: round(first, 1),
          unit: 'ms',
          detail: `template boot ${manifest.bootMs} ms, save ${manifest.saveMs} ms, state ${manifest.stateBytes} B`,
        },
        {
          metric: 'idle memory per clone (PSS)',
          value: round(clonePss / 1024 / 1024, 1),
          unit: 'MiB',
          detail: `mean of ${IDLE} idle clones alive together, after 5 s; /proc/<pid>/smaps_rollup`,
        },
        {
          metric: 'idle memory per cold-booted VM (PSS)',
          value: round(coldPss / 1024 / 1024, 1),
          unit: 'MiB',
          detail: 'mean of 2 idle VMs alive together, after 5 s',
        },
      );
    } finally {
      await rm(home, { recursive: true, force: true });
    }
    return { rows, environment: { accel, cpus: (await import('node:os')).availableParallelism() } };
  },
};
