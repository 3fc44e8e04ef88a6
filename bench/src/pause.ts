// Pause and resume as an E2B user sees them, with memory kept (`pause()`) and without
// (`pause({ keepMemory: false })`: the processes end, the disk is kept, connect boots
// afresh), side by side on each driver: pause time, pause→first exec after connect, and
// the memory the host still holds for a paused sandbox (PSS of its cgroup's processes).

import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox } from 'e2b';
import { aivaUpForSdk, benchDrivers, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';
import { sandboxPssMiB } from './sandbox-pss.js';

const q = (xs: number[], p: number) =>
  round(
    quantile(
      [...xs].sort((a, b) => a - b),
      p,
    ),
    1,
  );

const ROUNDS: Record<string, number> = { container: 10, 'qemu-microvm': 3 };

interface Round {
  pauseMs: number;
  resumeMs: number;
  heldMiB: number;
}

/** One pause and connect of a sandbox that has a process and a written file. */
async function pauseRound(keepMemory: boolean): Promise<Round> {
  const sbx = await Sandbox.create({ timeoutMs: 600_000 });
  try {
    await sbx.commands.run('sleep 600', { background: true });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    let t = performance.now();
    await sbx.pause({ keepMemory });
    const pauseMs = performance.now() - t;
    const held = await sandboxPssMiB(sbx.sandboxId);
    t = performance.now();
    const back = await Sandbox.connect(sbx.sandboxId);
    await back.commands.run('true');
    const resumeMs = performance.now() - t;
    if ((await back.files.read('/home/user/kept.txt')) !== 'kept') throw new Error('the file was lost');
    return { pauseMs, resumeMs, heldMiB: held };
  } finally {
    await sbx.kill();
  }
}

export const pauseBenchmark: Benchmark = {
  name: 'pause',
  description:
    'pause and connect through the e2b SDK, with memory kept vs without (keepMemory: false), per driver: pause time, connect→first exec, memory held while paused',
  async run() {
    const drivers = await benchDrivers();
    const rows: BenchRow[] = [];
    const scratch = await benchScratch('pause');
    try {
      for (const driver of drivers) {
        const home = join(scratch, driver);
        const server = await aivaUpForSdk(home, ['--runtime', driver]);
        try {
          const n = ROUNDS[driver] ?? 3;
          const kinds = [
            ['with memory', true],
            ['without memory', false],
          ] as const;
          const results: Record<string, Round[]> = {};
          // Interleaved, so that both kinds see the same host.
          for (let i = 0; i < n; i++) {
            for (const [kind, keep] of kinds) {
              process.stderr.write(`  ${driver}: pause ${kind} ${i + 1}/${n} …\n`);
              const list = results[kind] ?? [];
              list.push(await pauseRound(keep));
              results[kind] = list;
            }
          }
          const detail = `n=${n}, e2b SDK ${driver}, template base, a sleep running and a file written`;
          for (const [kind] of kinds) {
            const r = results[kind] ?? [];
            rows.push(
              {
                metric: `${driver} pause ${kind} p50`,
                value: q(
                  r.map((x) => x.pauseMs),
                  0.5,
                ),
                unit: 'ms',
                detail,
              },
              {
                metric: `${driver} connect→first exec after pause ${kind} p50`,
                value: q(
                  r.map((x) => x.resumeMs),
                  0.5,
                ),
                unit: 'ms',
                detail,
              },
              {
                metric: `${driver} memory held while paused ${kind} p50`,
                value: q(
                  r.map((x) => x.heldMiB),
                  0.5,
                ),
                unit: 'MiB',
                detail: `${detail}; PSS of the sandbox cgroup's processes`,
              },
            );
          }
          const p50 = (kind: string, f: (x: Round) => number) => q((results[kind] ?? []).map(f), 0.5);
          const withMem = p50('with memory', (x) => x.resumeMs);
          if (withMem > 0)
            rows.push({
              metric: `${driver} connect after pause without / with memory (p50)`,
              value: round(p50('without memory', (x) => x.resumeMs) / withMem, 2),
              unit: '×',
              detail,
            });
        } finally {
          await server.stop();
        }
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    return { rows, environment: { drivers: drivers.join(',') } };
  },
};
