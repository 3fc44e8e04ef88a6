// The desktop template as a computer-use agent meets it, through E2B's `@e2b/desktop`
// SDK against `aiva up` on containers: create→first screenshot (the SDK's create
// includes its own checks that Xvfb and Xfce run; the template's start command has them
// running already) and the memory an idle desktop holds. Measured cold (the start command
// draws the desktop during the create) and with a warm pool of desktops.
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Sandbox } from '@e2b/desktop';
import { aivaUpForSdk, benchDrivers, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';
import { sandboxPssMiB } from './sandbox-pss.js';

const TEMPLATE = 'desktop';
const ROUNDS = 5;

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
  args: string[];
}

/** create→first screenshot of a desktop sandbox, which is returned. */
async function createToScreenshot(): Promise<{ ms: number; sbx: Sandbox }> {
  const t = performance.now();
  const sbx = await Sandbox.create(TEMPLATE, { timeoutMs: 600_000 });
  const png = await sbx.screenshot();
  if (png.byteLength < 1000) throw new Error(`the first screenshot has ${png.byteLength} bytes`);
  return { ms: performance.now() - t, sbx };
}

async function measure(config: Config): Promise<{ screenshotMs: number[]; idleMiB: number[] }> {
  const f = { screenshotMs: [] as number[], idleMiB: [] as number[] };
  // Not measured: the first desktop (page cache of the template's files).
  await (await createToScreenshot()).sbx.kill();
  if (config.args.includes('--warm-pool')) await sleep(20_000);
  for (let i = 0; i < ROUNDS; i++) {
    process.stderr.write(`  ${config.name}: round ${i + 1}/${ROUNDS} …\n`);
    const { ms, sbx } = await createToScreenshot();
    f.screenshotMs.push(ms);
    // Idle: drawn and screenshot once; what the host holds for it after a moment.
    await sleep(3000);
    f.idleMiB.push(await sandboxPssMiB(sbx.sandboxId));
    await sbx.kill();
    // A warm pool refills in the background: leave it the time.
    if (config.args.includes('--warm-pool')) await sleep(15_000);
  }
  return f;
}

function rows(config: Config, f: { screenshotMs: number[]; idleMiB: number[] }): BenchRow[] {
  const detail = `n=${f.screenshotMs.length}, @e2b/desktop SDK, ${config.name}`;
  return [
    {
      metric: `${config.name} create→first screenshot p50`,
      value: p50(f.screenshotMs),
      unit: 'ms',
      detail,
    },
    {
      metric: `${config.name} idle memory per desktop p50`,
      value: p50(f.idleMiB),
      unit: 'MiB',
      detail: `${detail}; PSS of the sandbox cgroup's processes 3 s after its first screenshot`,
    },
  ];
}

export const desktopBenchmark: Benchmark = {
  name: 'desktop',
  description:
    'the desktop template through @e2b/desktop on containers, cold and with a warm pool: create→first screenshot, idle memory per desktop',
  async run() {
    if (!(await benchDrivers()).includes('container'))
      return { rows: [], notes: ['containers do not run on this host'] };
    const configs: Config[] = [
      { name: 'container', args: ['--runtime', 'container'] },
      { name: 'container + warm pool', args: ['--runtime', 'container', '--warm-pool', `${TEMPLATE}=2`] },
    ];
    const out: BenchRow[] = [];
    const scratch = await benchScratch('desktop');
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
