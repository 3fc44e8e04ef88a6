// Sandbox start-up per runtime: create→envd-ready through the sandbox manager, next to the
// raw floor of the same runtime measured in the same run (the same rootfs, init and envd
// started by runc/crun on a prepared bundle, or the same kernel and disk booted by a bare
// QEMU), and idle memory (PSS) per sandbox.

import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkHost,
  type DriverName,
  dataDir,
  ImageStore,
  runCommand,
  SandboxManager,
  type SandboxRuntime,
} from '@aiva/node';
import {
  AddressPool,
  Cgroup,
  createDiskOverlay,
  createRuntimes,
  createSandboxNetwork,
  ociConfig,
  processPss,
  qemuArgs,
  type RuntimeSpec,
  removeLink,
  waitForEnvd,
} from '@aiva/node/testkit';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const recipesDir = new URL('../../../images', import.meta.url).pathname;
const envdDir = new URL('../../../packages/envd/dist/guest', import.meta.url).pathname;

const SAMPLES: Record<string, number> = { container: 20, 'qemu-microvm': 5 };
const IDLE: Record<string, number> = { container: 10, 'qemu-microvm': 2 };

/** Start→envd-ready is timed up to the same /health answer the sandbox manager waits for. */
const healthy = (address: string, timeoutMs: number) => waitForEnvd(address, { timeoutMs });

const p50 = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );
const p95 = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.95,
  );

/** The raw floor of a container runtime: `<oci> run -d` of a prepared bundle until envd answers. */
async function rawContainer(oci: string, spec: RuntimeSpec, n: number): Promise<number[]> {
  const rootfs = join(spec.dir, 'rootfs');
  const upper = join(spec.dir, 'upper');
  const work = join(spec.dir, 'work');
  const bundle = join(spec.dir, 'bundle');
  for (const d of [rootfs, upper, work, bundle]) await mkdir(d, { recursive: true });
  await runCommand('mount', [
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${spec.template.rootfsLayers.join(':')},upperdir=${upper},workdir=${work}`,
    rootfs,
  ]);
  const config = ociConfig(spec, rootfs, {
    noNewPrivileges: false,
    maxOpenFiles: 20000,
    protectAgent: false,
  }) as {
    linux: { cgroupsPath: string };
  };
  config.linux.cgroupsPath = `/aiva-bench/${spec.id}`;
  await writeFile(join(bundle, 'config.json'), JSON.stringify(config));
  const root = `/run/aiva-bench/${oci}`;
  const ms: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      await runCommand(oci, ['--root', root, 'run', '--detach', '--bundle', bundle, `bench-${spec.id}`], {
        outputFd: 'ignore',
      });
      await healthy(spec.network.address, 10_000);
      ms.push(performance.now() - t);
      await runCommand(oci, ['--root', root, 'delete', '--force', `bench-${spec.id}`]);
    }
  } finally {
    await runCommand(oci, ['--root', root, 'delete', '--force', `bench-${spec.id}`]).catch(() => {});
    await runCommand('umount', [rootfs]);
  }
  return ms;
}

/** The raw floor of QEMU: the same command line, kernel and disk, no cgroup, until envd answers. */
async function rawQemu(spec: RuntimeSpec, n: number, accel: 'kvm' | 'tcg'): Promise<number[]> {
  const disk = join(spec.dir, 'disk.qcow2');
  const ms: number[] = [];
  for (let i = 0; i < n; i++) {
    await rm(disk, { force: true });
    await createDiskOverlay(disk, { file: spec.template.disk, format: 'raw' });
    const tscLine = (await readFile('/proc/cpuinfo', 'utf8')).match(/^cpu MHz\s*:\s*([\d.]+)/m)?.[1];
    const args = qemuArgs(spec, { disk, qmpSocket: join(spec.dir, `qmp-${i}.sock`) }, accel, {
      hostTscKhz: tscLine ? Math.round(Number(tscLine) * 1000) : undefined,
    });
    const t = performance.now();
    const qemu = spawn(
      'nsenter',
      [`--net=/run/netns/${spec.network.netns}`, '--', 'qemu-system-x86_64', ...args],
      {
        stdio: 'ignore',
      },
    );
    try {
      await healthy(spec.network.address, 120_000);
      ms.push(performance.now() - t);
    } finally {
      qemu.kill('SIGKILL');
      await new Promise((r) => qemu.once('exit', r));
    }
  }
  return ms;
}

/**
 * The raw floor of a runtime, `n` samples in ms: `runc`/`crun` run of a prepared bundle,
 * or a bare QEMU boot, until envd answers; network and rootfs prepared outside the timing.
 */
export async function rawFloor(
  raw: string,
  driver: DriverName,
  n: number,
  ctx: {
    template: RuntimeSpec['template'];
    kernel: RuntimeSpec['kernel'];
    home: string;
    pool: AddressPool;
    accel?: string;
  },
): Promise<number[]> {
  const { template, kernel, home, pool } = ctx;
  const id = `rawbench${raw}`;
  const link = pool.allocate();
  const dir = join(home, id);
  await mkdir(dir, { recursive: true });
  const network = await createSandboxNetwork(link, driver === 'container' ? 'namespace' : 'tap');
  const spec: RuntimeSpec = {
    id,
    dir,
    template,
    kernel,
    resources: { vcpus: 1, memoryMiB: 256, diskMiB: template.diskSizeMiB },
    network,
    hostname: 'sandbox',
    consoleLog: join(dir, 'console.log'),
  };
  try {
    return raw === 'qemu'
      ? await rawQemu(spec, n, ctx.accel as 'kvm' | 'tcg')
      : await rawContainer(raw, spec, n);
  } finally {
    await removeLink(link.slot, network.netns);
    pool.release(link.slot);
    await (await Cgroup.at(`aiva-bench/${id}`)).destroy().catch(() => {});
  }
}

async function idlePss(m: SandboxManager, driver: DriverName, n: number): Promise<number> {
  const made = [];
  for (let i = 0; i < n; i++) made.push(await m.create({ driver, memoryMiB: 256, vcpus: 1 }));
  await new Promise((r) => setTimeout(r, 5000));
  let total = 0;
  for (const s of made) {
    const pids = await (await Cgroup.at(`aiva/${s.id}`)).pids();
    for (const pid of pids) total += (await processPss(pid)) ?? 0;
  }
  for (const s of made) await m.kill(s.id);
  return total / n;
}

export const runtimesBenchmark: Benchmark = {
  name: 'runtimes',
  description: 'create→envd-ready per runtime vs the raw runtime, and idle memory per sandbox',
  async run() {
    const images = new ImageStore({ home: dataDir(), recipesDir, envdDir });
    const template = await images.ensureDisk(await images.ensureTemplate('base'));
    const kernel = await images.ensureKernel();
    const host = await checkHost();
    const rows: BenchRow[] = [];
    const home = await mkdtemp(join(tmpdir(), 'aiva-bench-'));
    const variants: {
      label: string;
      driver: DriverName;
      runtimes: Map<DriverName, SandboxRuntime>;
      raw: string;
    }[] = [];
    for (const oci of ['runc', 'crun'] as const) {
      if (host.checks.find((c) => c.variant === oci)?.available) {
        variants.push({
          label: `container/${oci}`,
          driver: 'container',
          runtimes: createRuntimes(host, { oci }),
          raw: oci,
        });
      }
    }
    const qemu = host.checks.find((c) => c.driver === 'qemu-microvm' && c.available);
    if (qemu)
      variants.push({
        label: `qemu-microvm/${qemu.variant}`,
        driver: 'qemu-microvm',
        runtimes: createRuntimes(host),
        raw: 'qemu',
      });

    const pool = new AddressPool('10.12.0.0/16');
    try {
      for (const v of variants) {
        const n = SAMPLES[v.driver] ?? 5;
        // Raw floor first, on a network and rootfs prepared outside the timing.
        process.stderr.write(`  ${v.label}: raw ${v.raw} ×${n} …\n`);
        const raw = await rawFloor(v.raw, v.driver, n, {
          template,
          kernel,
          home,
          pool,
          accel: qemu?.variant,
        });

        const m = await SandboxManager.open({
          home: join(home, v.label.replace('/', '-')),
          images,
          runtimes: v.runtimes,
          defaultDriver: v.driver,
        });
        const aiva: number[] = [];
        process.stderr.write(`  ${v.label}: aiva ×${n} …\n`);
        try {
          for (let i = 0; i < n; i++) {
            const t = performance.now();
            const s = await m.create({ memoryMiB: 256, vcpus: 1 });
            aiva.push(performance.now() - t);
            await m.kill(s.id);
          }
          const pss = await idlePss(m, v.driver, IDLE[v.driver] ?? 2);
          const detail = `n=${n}, 1 vCPU, 256 MiB`;
          rows.push(
            { metric: `${v.label} create→envd-ready p50`, value: round(p50(aiva), 1), unit: 'ms', detail },
            { metric: `${v.label} create→envd-ready p95`, value: round(p95(aiva), 1), unit: 'ms', detail },
            {
              metric: `${v.label} raw ${v.raw} start→envd-ready p50`,
              value: round(p50(raw), 1),
              unit: 'ms',
              detail,
            },
            {
              metric: `${v.label} ratio aiva/raw (p50)`,
              value: round(p50(aiva) / p50(raw), 2),
              unit: '×',
              detail,
            },
            {
              metric: `${v.label} idle memory per sandbox (PSS)`,
              value: round(pss / 1024 / 1024, 1),
              unit: 'MiB',
              detail: `mean of ${IDLE[v.driver]} idle sandboxes after 5 s; all processes of the sandbox's cgroup`,
            },
          );
        } finally {
          await m.killAll();
          await m.close();
        }
      }
    } finally {
      await rm(home, { recursive: true, force: true });
    }
    return {
      rows,
      environment: { cpus: (await import('node:os')).availableParallelism(), kvm: qemu?.variant ?? 'none' },
    };
  },
};
