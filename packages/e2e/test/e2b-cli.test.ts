// E2B's own CLI (@e2b/cli 2.19) against `aiva up`, pointed at it by environment variables
// only: `e2b template create` (a Dockerfile through E2B's build API), `list`, `delete`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { Sandbox, Template } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();
const e2bCli = join(
  dirname(createRequire(import.meta.url).resolve('@e2b/cli/package.json')),
  'dist',
  'index.js',
);
let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'aiva-e2b-cli-'));
  await writeFile(
    join(dir, 'e2b.Dockerfile'),
    'FROM e2bdev/base\nRUN echo "made by e2b template create" > /home/user/origin.txt\nCOPY hello.txt /home/user/\n',
  );
  await writeFile(join(dir, 'hello.txt'), 'hello from the e2b CLI\n');
});
after(() => rm(dir, { recursive: true, force: true }));

/** Runs `e2b …` as a user with only E2B_API_URL and E2B_API_KEY set (and a home of its own: no ~/.e2b). */
async function e2b(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    PATH: process.env.PATH,
    HOME: dir,
    E2B_API_URL: server.up.url,
    E2B_API_KEY: server.up.apiKey,
    NO_UPDATE_NOTIFIER: '1',
    CI: '1',
  };
  try {
    const r = await promisify(execFile)(process.execPath, [e2bCli, ...args], { env, cwd: dir });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

test('e2b template create | list | delete work against aiva', { timeout: 600_000 }, async () => {
  const created = await e2b(
    'template',
    'create',
    'from-e2b-cli',
    '-p',
    dir,
    '--cpu-count',
    '1',
    '--memory-mb',
    '512',
  );
  assert.equal(created.code, 0, `${created.stdout}\n${created.stderr}`);
  const listed = await e2b('template', 'list', '-f', 'json');
  assert.equal(listed.code, 0, listed.stderr);
  const rows = JSON.parse(listed.stdout) as {
    templateID: string;
    aliases: string[];
    cpuCount: number;
    memoryMB: number;
  }[];
  const row = rows.find((r) => r.aliases.includes('from-e2b-cli'));
  assert.ok(row, listed.stdout);
  assert.equal(row.cpuCount, 1);
  assert.equal(row.memoryMB, 512);
  const pretty = await e2b('template', 'list');
  assert.match(pretty.stdout, /from-e2b-cli/);

  const sbx = await Sandbox.create('from-e2b-cli');
  try {
    assert.equal(await sbx.files.read('/home/user/origin.txt'), 'made by e2b template create\n');
    assert.equal(await sbx.files.read('/home/user/hello.txt'), 'hello from the e2b CLI\n');
  } finally {
    await sbx.kill();
  }

  const deleted = await e2b('template', 'delete', 'from-e2b-cli', '-y');
  assert.equal(deleted.code, 0, `${deleted.stdout}\n${deleted.stderr}`);
  assert.equal(await Template.exists('from-e2b-cli'), false);
});
