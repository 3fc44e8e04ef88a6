// Template builds through `aiva up` (containers) and the e2b SDK's builder: a cold build
// (every step run, `skipCache`, on the cached base), a rebuild with only the last step
// changed (the cache at work), and create→first exec from the built template next to
// base, in the same run.

import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dataDir } from '@aiva/node';
import { type LogEntry, Sandbox, Template } from 'e2b';
import { aivaUp, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const q = (xs: number[], p: number) => round(quantile(sorted(xs), p), 1);

/** A small but real template: files in, a virtualenv, 50 MiB of data, then a last step that changes. */
function benchTemplate(context: string, last: string) {
  return Template({ fileContextPath: context })
    .fromTemplate('base')
    .setEnvs({ APP_HOME: '/home/user/app' })
    .copy('app', '/home/user/app')
    .runCmd('python3 -m venv --without-pip /home/user/venv')
    .runCmd('dd if=/dev/urandom of=/home/user/data.bin bs=1M count=50 status=none')
    .setWorkdir('/home/user/app')
    .runCmd(`echo ${last} > /home/user/version.txt`);
}

async function timed(f: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await f();
  return performance.now() - t;
}

async function createToExec(template: string): Promise<number> {
  const t = performance.now();
  const sbx = await Sandbox.create(template, { timeoutMs: 600_000 });
  await sbx.commands.run('true');
  const ms = performance.now() - t;
  await sbx.kill();
  return ms;
}

export const templateBenchmark: Benchmark = {
  name: 'template',
  description:
    'template builds through aiva up and the e2b SDK: cold build, rebuild with the last step changed, create→first exec from the template vs base',
  async run() {
    const scratch = await benchScratch('template');
    const home = join(scratch, 'home');
    const context = join(scratch, 'context');
    await mkdir(join(context, 'app'), { recursive: true });
    for (let i = 0; i < 200; i++)
      await writeFile(join(context, 'app', `module${i}.py`), `X = ${i}\n`.repeat(200));
    await mkdir(home, { recursive: true });
    await symlink(join(dataDir(), 'images'), join(home, 'images'));
    const server = await aivaUp(home, ['--runtime', 'container']);
    process.env.E2B_API_URL = server.url;
    process.env.E2B_SANDBOX_URL = server.url;
    process.env.E2B_API_KEY = server.apiKey;
    const rows: BenchRow[] = [];
    try {
      const cold: number[] = [];
      const lastChanged: number[] = [];
      const nCold = 3;
      const nLast = 5;
      process.stderr.write(`  cold builds (skipCache) ×${nCold} …\n`);
      let cachedInCold = 0;
      const countCached = (l: LogEntry) => {
        if (/^\[(base|\d+\/\d+)\] CACHED /.test(l.message)) cachedInCold++;
      };
      for (let i = 0; i < nCold; i++)
        cold.push(
          await timed(() =>
            Template.build(benchTemplate(context, 'v0'), 'bench-app', {
              skipCache: true,
              onBuildLogs: countCached,
            }),
          ),
        );
      // A cold build that found its steps cached would measure nothing.
      if (cachedInCold > 0) throw new Error(`skipCache builds reported ${cachedInCold} cached steps`);
      process.stderr.write(`  rebuilds with the last step changed ×${nLast} …\n`);
      for (let i = 1; i <= nLast; i++)
        lastChanged.push(await timed(() => Template.build(benchTemplate(context, `v${i}`), 'bench-app')));
      const detail = '6 steps + the default user phase on base: COPY 200 files, venv, 50 MiB, WORKDIR, RUN';
      rows.push(
        { metric: 'cold build p50', value: q(cold, 0.5), unit: 'ms', detail: `n=${nCold}, ${detail}` },
        {
          metric: 'rebuild, last step changed p50',
          value: q(lastChanged, 0.5),
          unit: 'ms',
          detail: `n=${nLast}`,
        },
        {
          metric: 'rebuild / cold build (p50)',
          value: round(quantile(sorted(lastChanged), 0.5) / quantile(sorted(cold), 0.5), 2),
          unit: '×',
          detail: 'the cache ratio',
        },
      );
      const n = 15;
      process.stderr.write(`  create→first exec ×${n}, base and bench-app interleaved …\n`);
      const base: number[] = [];
      const custom: number[] = [];
      for (let i = 0; i < n; i++) {
        base.push(await createToExec('base'));
        custom.push(await createToExec('bench-app'));
      }
      rows.push(
        {
          metric: 'base create→first exec p50',
          value: q(base, 0.5),
          unit: 'ms',
          detail: `n=${n}, container`,
        },
        {
          metric: 'bench-app create→first exec p50',
          value: q(custom, 0.5),
          unit: 'ms',
          detail: `n=${n}, container, 7 layers more than base`,
        },
        {
          metric: 'bench-app / base create→first exec (p50)',
          value: round(quantile(sorted(custom), 0.5) / quantile(sorted(base), 0.5), 2),
          unit: '×',
        },
      );
      await fetch(`${server.url}/templates/bench-app`, {
        method: 'DELETE',
        headers: { 'x-api-key': server.apiKey },
      });
    } finally {
      await server.stop();
      await rm(join(home, 'images'), { force: true });
      await rm(scratch, { recursive: true, force: true });
    }
    return { rows };
  },
};
