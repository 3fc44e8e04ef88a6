// The code interpreter as an agent meets it, through the real `@e2b/code-interpreter`
// SDK against `aiva up`, per driver and beside the `base` template on the same server:
// create→first runCode('1+1') next to create→first exec, the runCode('x += 1') round
// trip, and the memory an idle sandbox holds. Containers are measured cold and with a
// warm pool of both templates; microVMs are restored from the template's snapshot, taken
// once the kernel was warm.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { DriverName } from '@aiva/node';
import { Sandbox } from '@e2b/code-interpreter';
import { aivaUpForSdk, benchDrivers, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';
import { sandboxPssMiB } from './sandbox-pss.js';

const TEMPLATE = 'code-interpreter-v1';
const ROUNDS: Record<string, number> = { container: 10, 'qemu-microvm': 3 };
const ROUND_TRIPS: Record<string, number> = { container: 100, 'qemu-microvm': 20 };

const p50 = (xs: number[]) =>
  round(
    quantile(
      [...xs].sort((a, b) => a - b),
      0.5,
    ),
    1,
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Config {
  name: string;
  driver: DriverName;
  args: string[];
}

interface Figures {
  runCodeMs: number[];
  execMs: number[];
  roundTripMs: number[];
  idleMiB: number[];
  baseIdleMiB: number[];
}

/** create→first runCode('1+1') of a code-interpreter sandbox, which is returned. */
async function createToRunCode(): Promise<{ ms: number; sbx: Sandbox }> {
  const t = performance.now();
  const sbx = await Sandbox.create(TEMPLATE, { timeoutMs: 600_000 });
  const r = await sbx.runCode('1+1');
  if (r.text !== '2') throw new Error(`runCode('1+1') gave ${JSON.stringify(r.toJSON())}`);
  return { ms: performance.now() - t, sbx };
}

/** create→first exec of a base sandbox, which is returned. */
async function createToExec(): Promise<{ ms: number; sbx: Sandbox }> {
  const t = performance.now();
  const sbx = await Sandbox.create('base', { timeoutMs: 600_000 });
  await sbx.commands.run('true');
  return { ms: performance.now() - t, sbx };
}

async function measure(config: Config): Promise<Figures> {
  const n = ROUNDS[config.driver] ?? 3;
  const f: Figures = { runCodeMs: [], execMs: [], roundTripMs: [], idleMiB: [], baseIdleMiB: [] };
  // Not measured: the first sandbox of each template (a microVM's makes its snapshot).
  for (const first of [await createToRunCode(), await createToExec()]) await first.sbx.kill();
  if (config.args.includes('--warm-pool')) await sleep(15_000);
  for (let i = 0; i < n; i++) {
    process.stderr.write(`  ${config.name}: round ${i + 1}/${n} …\n`);
    const ci = await createToRunCode();
    f.runCodeMs.push(ci.ms);
    const base = await createToExec();
    f.execMs.push(base.ms);
    // Idle: the kernel has run once; what the host holds for each after a moment.
    await sleep(3000);
    f.idleMiB.push(await sandboxPssMiB(ci.sbx.sandboxId));
    f.baseIdleMiB.push(await sandboxPssMiB(base.sbx.sandboxId));
    await Promise.all([ci.sbx.kill(), base.sbx.kill()]);
    // A warm pool refills in the background: leave it the time.
    if (config.args.includes('--warm-pool')) await sleep(8000);
  }
  const { sbx } = await createToRunCode();
  try {
    await sbx.runCode('x = 0');
    for (let i = 0; i < (ROUND_TRIPS[config.driver] ?? 20); i++) {
      const t = performance.now();
      await sbx.runCode('x += 1');
      f.roundTripMs.push(performance.now() - t);
    }
  } finally {
    await sbx.kill();
  }
  return f;
}

function rows(config: Config, f: Figures): BenchRow[] {
  const n = f.runCodeMs.length;
  const detail = `n=${n}, @e2b/code-interpreter SDK, ${config.name}`;
  const ci = p50(f.runCodeMs);
  const base = p50(f.execMs);
  return [
    { metric: `${config.name} create→first runCode('1+1') p50`, value: ci, unit: 'ms', detail },
    { metric: `${config.name} base create→first exec p50`, value: base, unit: 'ms', detail },
    {
      metric: `${config.name} code-interpreter / base (p50)`,
      value: base > 0 ? round(ci / base, 2) : 0,
      unit: '×',
      detail,
    },
    {
      metric: `${config.name} runCode('x += 1') round trip p50`,
      value: p50(f.roundTripMs),
      unit: 'ms',
      detail: `n=${f.roundTripMs.length}, one sandbox, ${config.name}`,
    },
    {
      metric: `${config.name} idle memory per code-interpreter sandbox p50`,
      value: p50(f.idleMiB),
      unit: 'MiB',
      detail: `${detail}; PSS of the sandbox cgroup's processes 3 s after its first run`,
    },
    {
      metric: `${config.name} idle memory per base sandbox p50`,
      value: p50(f.baseIdleMiB),
      unit: 'MiB',
      detail: `${detail}; PSS 3 s after its first exec`,
    },
  ];
}

export const codeInterpreterBenchmark: Benchmark = {
  name: 'code-interpreter',
  description:
    "the code interpreter through @e2b/code-interpreter, per driver and beside base: create→first runCode('1+1') vs create→first exec, the runCode('x += 1') round trip, idle memory per sandbox",
  async run() {
    const drivers = await benchDrivers();
    const usable = (d: DriverName) => drivers.includes(d);
    const configs: Config[] = [];
    if (usable('container'))
      configs.push(
        { name: 'container', driver: 'container', args: ['--runtime', 'container'] },
        {
          name: 'container + warm pool',
          driver: 'container',
          args: ['--runtime', 'container', '--warm-pool', `${TEMPLATE}=2`, '--warm-pool', 'base=2'],
        },
      );
    if (usable('qemu-microvm'))
      configs.push({ name: 'qemu-microvm', driver: 'qemu-microvm', args: ['--runtime', 'qemu-microvm'] });
    const out: BenchRow[] = [];
    const scratch = await benchScratch('code-interpreter');
    try {
      for (const [i, config] of configs.entries()) {
        const server = await aivaUpForSdk(join(scratch, String(i)), [
          ...config.args,
          '--memory-budget',
          '200000',
        ]);
        try {
          out.push(...rows(config, await measure(config)));
        } finally {
          await server.stop();
        }
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
    return { rows: out, environment: { configs: configs.map((c) => c.name).join(', ') } };
  },
};
