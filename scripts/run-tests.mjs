#!/usr/bin/env node
// Runs the compiled test files (packages/*/dist/test/**/*.test.js) with Node's test
// runner. Arguments filter by path substring: `npm test -- image envd`.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { openSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const filters = process.argv.slice(2);

function find(dir) {
  let out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = readdirSync(join(root, 'packages'))
  .map((p) => join(root, 'packages', p, 'dist', 'test'))
  .filter((d) => {
    try {
      return statSync(d).isDirectory();
    } catch {
      return false;
    }
  })
  .flatMap(find)
  .map((f) => relative(root, f))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}
// The heavy templates (code-interpreter-v1: Debian's scientific Python stack; desktop:
// Xfce and Chromium; browser: Chromium) take minutes on a fresh machine: those the chosen
// e2e tests need are built now, one after another in the background, while the tests
// before their own run. Their `aiva image build <name>` waits for it (one build of a
// recipe at a time, across processes) and finds it made; if it failed, they build it
// again in the foreground and show why.
const HEAVY_TEMPLATES = [
  { test: 'code-interpreter', template: 'code-interpreter-v1' },
  { test: 'desktop', template: 'desktop' },
  { test: 'browser', template: 'browser' },
];
// In the order the tests come that need them (files run sorted: browser's before the others').
const firstNeed = (test) => files.findIndex((f) => f.includes('e2e') && f.includes(test));
const prebuilds = HEAVY_TEMPLATES.filter(({ test }) => firstNeed(test) >= 0)
  .sort((a, b) => firstNeed(a.test) - firstNeed(b.test))
  .map(({ template }) => template);
let prebuild;
let stopPrebuilds = false;
const prebuilt = (async () => {
  for (const template of prebuilds) {
    if (stopPrebuilds) return;
    const log = join(tmpdir(), `aiva-prebuild-${template}.log`);
    const out = openSync(log, 'w');
    prebuild = spawn(
      process.execPath,
      [join(root, 'packages/cli/dist/src/main.js'), 'image', 'build', template, '--no-kernel'],
      { cwd: root, stdio: ['ignore', out, out] },
    );
    console.error(`building ${template} in the background (pid ${prebuild.pid}, log ${log})`);
    await once(prebuild, 'exit');
  }
})();

// Test files run one at a time: many of them start VMs and containers, and the
// machines we run on have two cores.
// (Not spawnSync: the background builds go on one after another meanwhile.)
const tests = spawn(process.execPath, ['--enable-source-maps', '--test', '--test-concurrency=1', ...files], {
  stdio: 'inherit',
  cwd: root,
});
const [status] = await once(tests, 'exit');
stopPrebuilds = true;
if (prebuild && prebuild.exitCode === null && prebuild.signalCode === null) {
  // The tests ended first (a filter, a failure): Ctrl-C stops a build and leaves nothing.
  prebuild.kill('SIGINT');
}
await prebuilt;
process.exit(status ?? 1);
