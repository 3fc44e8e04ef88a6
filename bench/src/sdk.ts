// What an E2B user sees: `aiva up` (the real CLI, in a child process, on a temporary data
// directory sharing the image store) driven by the real e2b SDK through the server's
// proxy. Create→first `commands.run` sequential and concurrent for each driver, next to
// the raw floor of that driver measured in the same run; `commands.run('true')`; 100 MiB
// upload and download; idle memory per sandbox and how many fit in 20 GiB.

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataDir, ImageStore, lockFile } from '@aiva/node';
import { AddressPool } from '@aiva/node/testkit';
import { Sandbox } from 'e2b';
import { aivaUpForSdk, benchDrivers, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';
import { rawFloor } from './runtimes.js';
import { sandboxPssMiB } from './sandbox-pss.js';

const recipesDir = fileURLToPath(new URL('../../../images', import.meta.url));
const envdDir = fileURLToPath(new URL('../../../packages/envd/dist/guest', import.meta.url));

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const q = (xs: number[], p: number) => round(quantile(sorted(xs), p), 1);

/** Create→first `commands.run('true')`, in ms; the sandbox is killed after (not timed). */
async function createToExec(): Promise<{ ms: number; sbx: Sandbox }> {
  const t = performance.now();
  const sbx = await Sandbox.create({ timeoutMs: 600_000 });
  await sbx.commands.run('true');
  return { ms: performance.now() - t, sbx };
}

async function concurrent(n: number): Promise<number[]> {
  const results = await Promise.all(Array.from({ length: n }, () => createToExec()));
  await Promise.all(results.map((r) => r.sbx.kill()));
  return results.map((r) => r.ms);
}

/** Mean PSS of each sandbox's processes (sandboxPssMiB), in bytes. */
async function meanPss(ids: string[]): Promise<number> {
  let total = 0;
  for (const id of ids) total += (await sandboxPssMiB(id)) * 2 ** 20;
  return total / ids.length;
}

/** Containers with `--warm-pool base=5`: creates are handed pre-made sandboxes. */
async function warmPoolRun(scratch: string, before: BenchRow[]): Promise<BenchRow[]> {
  const home = join(scratch, 'pool');
  const server = await aivaUpForSdk(home, ['--runtime', 'container', '--warm-pool', 'base=5']);
  try {
    // Let the pool fill (5 × ~0.3 s), then create one at a time, leaving it time to refill.
    await new Promise((r) => setTimeout(r, 5000));
    const n = 30;
    process.stderr.write(`  container + warm pool: sequential create→first exec ×${n} …\n`);
    const seq: number[] = [];
    for (let i = 0; i < n; i++) {
      const r = await createToExec();
      seq.push(r.ms);
      await r.sbx.kill();
      await new Promise((r) => setTimeout(r, 500));
    }
    const cold = before.find((r) => r.metric === 'container create→first exec p50')?.value;
    const floor = before.find((r) => r.metric === 'container raw runc floor p50')?.value;
    const detail = `n=${n}, pool of 5 refilled between creates`;
    return [
      { metric: 'container (warm pool) create→first exec p50', value: q(seq, 0.5), unit: 'ms', detail },
      { metric: 'container (warm pool) create→first exec p95', value: q(seq, 0.95), unit: 'ms', detail },
      ...(cold
        ? [
            {
              metric: 'container warm pool / cold (p50)',
              value: round(q(seq, 0.5) / cold, 2),
              unit: '×',
              detail,
            },
          ]
        : []),
      ...(floor
        ? [
            {
              metric: 'container warm pool / raw runc floor (p50)',
              value: round(q(seq, 0.5) / floor, 2),
              unit: '×',
              detail,
            },
          ]
        : []),
    ];
  } finally {
    await server.stop();
  }
}

const SEQUENTIAL: Record<string, number> = { container: 30, 'qemu-microvm': 5 };
const CONCURRENT: Record<string, number[]> = { container: [10, 50], 'qemu-microvm': [2] };
const IDLE: Record<string, number> = { container: 50, 'qemu-microvm': 2 };

export const sdkBenchmark: Benchmark = {
  name: 'sdk',
  description:
    'the e2b SDK against aiva up: create→first exec (sequential, concurrent) vs the raw floor, exec round trip, 100 MiB transfer, idle memory',
  async run() {
    const drivers = await benchDrivers();
    const images = new ImageStore({ home: dataDir(), recipesDir, envdDir });
    const template = await images.ensureDisk(await images.ensureTemplate('base'));
    const kernel = await images.ensureKernel();
    const rows: BenchRow[] = [];
    const scratch = await benchScratch('sdk');
    const pool = new AddressPool('10.12.0.0/16');
    try {
      for (const driver of drivers) {
        const n = SEQUENTIAL[driver] ?? 5;
        // The container floor is a raw runc start; a microVM create is a snapshot restore,
        // whose raw floor the vm-snapshot benchmark measures.
        let floor: number[] = [];
        if (driver === 'container') {
          process.stderr.write(`  ${driver}: raw runc floor ×${n} …\n`);
          // Holding the node lock: no node (nor another benchmark or test) runs meanwhile.
          const lock = await lockFile('/run/aiva/node.lock');
          try {
            floor = await rawFloor('runc', driver, n, { template, kernel, home: scratch, pool });
          } finally {
            await lock.release();
          }
        }

        const home = join(scratch, driver);
        // Limits counted by the sandboxes' memory limits would stop at ~40 containers of
        // 512 MiB on 24 GiB: overcommit for the 50-concurrent and idle runs.
        const server = await aivaUpForSdk(home, ['--runtime', driver, '--memory-budget', '200000']);
        try {
          process.stderr.write(`  ${driver}: sequential create→first exec ×${n} …\n`);
          const seq: number[] = [];
          for (let i = 0; i < n; i++) {
            const r = await createToExec();
            seq.push(r.ms);
            await r.sbx.kill();
          }
          const detail = `n=${n}, e2b SDK ${driver}, template base`;
          rows.push(
            { metric: `${driver} create→first exec p50`, value: q(seq, 0.5), unit: 'ms', detail },
            { metric: `${driver} create→first exec p95`, value: q(seq, 0.95), unit: 'ms', detail },
          );
          if (floor.length > 0)
            rows.push(
              {
                metric: `${driver} raw runc floor p50`,
                value: q(floor, 0.5),
                unit: 'ms',
                detail: `n=${n}, start→envd-ready of a prepared bundle`,
              },
              {
                metric: `${driver} ratio aiva/raw (p50)`,
                value: round(quantile(sorted(seq), 0.5) / quantile(sorted(floor), 0.5), 2),
                unit: '×',
                detail,
              },
            );
          for (const c of CONCURRENT[driver] ?? []) {
            process.stderr.write(`  ${driver}: ${c} concurrent creates …\n`);
            const ms = await concurrent(c);
            const d = `${c} at once, each create→first exec`;
            rows.push(
              { metric: `${driver} ${c}-concurrent p50`, value: q(ms, 0.5), unit: 'ms', detail: d },
              { metric: `${driver} ${c}-concurrent p99`, value: q(ms, 0.99), unit: 'ms', detail: d },
              {
                metric: `${driver} ${c}-concurrent p99 / sequential p50`,
                value: round(quantile(sorted(ms), 0.99) / quantile(sorted(seq), 0.5), 2),
                unit: '×',
                detail: d,
              },
            );
          }

          const sbx = await Sandbox.create({ timeoutMs: 600_000 });
          try {
            process.stderr.write(`  ${driver}: exec round trips and 100 MiB transfers …\n`);
            const runs: number[] = [];
            for (let i = 0; i < (driver === 'container' ? 100 : 20); i++) {
              const t = performance.now();
              await sbx.commands.run('true');
              runs.push(performance.now() - t);
            }
            rows.push({
              metric: `${driver} commands.run('true') p50`,
              value: q(runs, 0.5),
              unit: 'ms',
              detail: `n=${runs.length}, through the proxy`,
            });
            const data = Buffer.alloc(100 * 1024 * 1024, 7);
            let t = performance.now();
            await sbx.files.write('/tmp/blob', new Uint8Array(data).buffer);
            const up = performance.now() - t;
            t = performance.now();
            const back = await sbx.files.read('/tmp/blob', { format: 'bytes' });
            const down = performance.now() - t;
            if (back.length !== data.length)
              throw new Error(`downloaded ${back.length} bytes, not ${data.length}`);
            rows.push(
              { metric: `${driver} upload 100 MiB`, value: round(100 / (up / 1000), 1), unit: 'MiB/s' },
              { metric: `${driver} download 100 MiB`, value: round(100 / (down / 1000), 1), unit: 'MiB/s' },
            );
          } finally {
            await sbx.kill();
          }

          const idle = IDLE[driver] ?? 2;
          process.stderr.write(`  ${driver}: ${idle} idle sandboxes …\n`);
          const made: Sandbox[] = [];
          try {
            for (let i = 0; i < idle; i++) made.push(await Sandbox.create({ timeoutMs: 600_000 }));
            await new Promise((r) => setTimeout(r, 5000));
            const pss = await meanPss(made.map((s) => s.sandboxId));
            rows.push(
              {
                metric: `${driver} idle memory per sandbox (PSS)`,
                value: round(pss / 1024 / 1024, 1),
                unit: 'MiB',
                detail: `mean over ${idle} idle sandboxes after 5 s`,
              },
              {
                metric: `${driver} idle sandboxes in 20 GiB`,
                value: Math.floor((20 * 1024 * 1024 * 1024) / pss),
                unit: 'sandboxes',
                detail: `extrapolated from ${idle} measured`,
              },
            );
          } finally {
            await Promise.all(made.map((s) => s.kill()));
          }
        } finally {
          await server.stop();
        }
      }
      if (drivers.includes('container')) rows.push(...(await warmPoolRun(scratch, rows)));
    } finally {
      await rm(join(scratch, 'pool', 'images'), { force: true });
      await rm(join(scratch, 'container', 'images'), { force: true });
      await rm(join(scratch, 'qemu-microvm', 'images'), { force: true });
      await rm(scratch, { recursive: true, force: true });
    }
    return { rows, environment: { cpus: (await import('node:os')).availableParallelism() } };
  },
};
