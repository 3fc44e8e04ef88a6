// npm run bench [-- NAME...]: runs the benchmarks (all, or those named), prints a table
// per benchmark and writes the figures as JSON to bench/results/.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { accountingBenchmark } from './accounting.js';
import type { Benchmark, BenchResult } from './bench.js';
import { checkpointBenchmark } from './checkpoint.js';
import { clusterBenchmark } from './cluster.js';
import { codeInterpreterBenchmark } from './code-interpreter.js';
import { desktopBenchmark } from './desktop.js';
import { envdBenchmark } from './envd.js';
import { environmentsBenchmark } from './environments.js';
import { networkBenchmark } from './network.js';
import { pauseBenchmark } from './pause.js';
import { runtimesBenchmark } from './runtimes.js';
import { sdkBenchmark } from './sdk.js';
import { templateBenchmark } from './template.js';
import { vmSnapshotBenchmark } from './vm-snapshot.js';

/** Every benchmark; add new modules here. */
const benchmarks: Benchmark[] = [
  envdBenchmark,
  runtimesBenchmark,
  networkBenchmark,
  vmSnapshotBenchmark,
  checkpointBenchmark,
  sdkBenchmark,
  pauseBenchmark,
  templateBenchmark,
  codeInterpreterBenchmark,
  desktopBenchmark,
  clusterBenchmark,
  accountingBenchmark,
  environmentsBenchmark,
];

const resultsDir = fileURLToPath(new URL('../../results', import.meta.url));

function table(result: BenchResult): string {
  const rows = result.rows.map((r) => [r.metric, String(r.value), r.unit, r.detail ?? '']);
  const head = ['metric', 'value', 'unit', 'detail'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 1 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const wanted = process.argv.slice(2);
  const selected = benchmarks.filter((b) => wanted.length === 0 || wanted.includes(b.name));
  if (selected.length === 0) {
    console.error(
      `no benchmark named ${wanted.join(', ')}; have: ${benchmarks.map((b) => b.name).join(', ')}`,
    );
    process.exit(2);
  }
  await mkdir(resultsDir, { recursive: true });
  for (const b of selected) {
    console.log(`\n# ${b.name}: ${b.description}\n`);
    const started = new Date();
    const result = await b.run();
    console.log(table(result));
    for (const note of result.notes ?? []) console.log(`note: ${note}`);
    const file = join(resultsDir, `${b.name}-${started.toISOString().replaceAll(':', '-')}.json`);
    await writeFile(
      file,
      `${JSON.stringify({ benchmark: b.name, startedAt: started.toISOString(), ...result }, null, 2)}\n`,
    );
    console.log(`\nwritten to ${file}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
