// `aiva data <name|sandbox-id> push|pull|sync` through the built CLI against a real `aiva up`
// (containers). The environment is a sandbox made with the e2b SDK carrying the metadata
// `aiva.environment=<name>` and a /data directory, as `aiva init` makes one.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { Sandbox } from 'e2b';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';

let home = '';
let work = '';
let up: RunningUp | undefined;
let sbx: Sandbox;
let opts: { apiUrl: string; apiKey: string; sandboxUrl: string };
const name = `data-${randomBytes(3).toString('hex')}`;
const aiva = (...args: string[]) => runCli(args, { env: { AIVA_HOME: home } });

/** What the summary of `--json` says. */
interface Summary {
  uploaded?: number;
  downloaded?: number;
  added: number;
  deleted: number;
  unchanged: number;
  bytes: number;
  dryRun?: boolean;
}

async function json(args: string[]): Promise<Summary> {
  const r = await aiva(...args, '--json');
  assert.equal(r.code, 0, explain(r));
  return JSON.parse(r.stdout) as Summary;
}

/** Every file, link and directory under `dir` in the sandbox: `type mode path -> target`, sorted. */
async function remoteListing(dir: string): Promise<string[]> {
  const r = await sbx.commands.run(
    `cd ${dir} && find . -mindepth 1 -printf '%y %m %P -> %l\\0' | LC_ALL=C sort -z`,
  );
  return r.stdout.split('\0').slice(0, -1);
}

const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 7 + (i >> 8)) & 0xff));

/** The tree pushed first: nested dirs, a binary file, a name with spaces, a link, an executable. */
async function makeTree(root: string): Promise<void> {
  await mkdir(join(root, 'nested/deeper'), { recursive: true });
  await writeFile(join(root, 'readme.txt'), 'hello\n');
  await writeFile(join(root, 'nested/deeper/blob.bin'), binary);
  await writeFile(join(root, 'nested/with spaces é.txt'), 'spaces and unicode\n');
  await writeFile(join(root, 'nested/new\nline'), 'nl\n');
  await writeFile(join(root, 'run.sh'), '#!/bin/sh\necho ran\n');
  await chmod(join(root, 'run.sh'), 0o755);
  await symlink('nested/deeper/blob.bin', join(root, 'link-to-blob'));
  await writeFile(join(root, 'gone-later.txt'), 'to be deleted\n');
}

describe('aiva data', () => {
  before(async () => {
    home = await tempHome();
    work = await mkdtemp(join(tmpdir(), 'aiva-data-'));
    up = await startUp(home, ['--log-level', 'warn', '--runtime', 'container']);
    const credentials = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
      apiUrl: string;
      apiKey: string;
    };
    opts = { apiUrl: credentials.apiUrl, apiKey: credentials.apiKey, sandboxUrl: credentials.apiUrl };
    sbx = await Sandbox.create('base', {
      ...opts,
      timeoutMs: 900_000,
      metadata: { 'aiva.environment': name },
    });
    // Until `aiva init` makes it with a volume: the environment's data directory.
    await sbx.commands.run('mkdir -p /data && chown user:user /data', { user: 'root' });
  });
  after(async () => {
    await sbx?.kill().catch(() => undefined);
    if (up) assert.equal(await up.stop(), 0, up.stderr());
    if (home) await removeHome(home);
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('push moves a tree with its modes and links; sync moves only what changed and deletes what went', async () => {
    const local = join(work, 'tree');
    await makeTree(local);
    const first = await json(['data', name, 'push', local, 'app']);
    assert.deepEqual(first, {
      uploaded: 7,
      added: 7,
      deleted: 0,
      unchanged: 0,
      bytes: 70_000 + 6 + 19 + 3 + 19 + 14,
    });
    assert.equal(await sbx.files.read('/data/app/readme.txt'), 'hello\n');
    const blob = await sbx.files.read('/data/app/nested/deeper/blob.bin', { format: 'bytes' });
    assert.ok(Buffer.from(blob).equals(binary), 'the binary file arrives byte for byte');
    assert.equal(await sbx.files.read('/data/app/nested/with spaces é.txt'), 'spaces and unicode\n');
    assert.equal((await sbx.commands.run('/data/app/run.sh')).stdout, 'ran\n');
    assert.equal(await sbx.files.read('/data/app/nested/new\nline'), 'nl\n');
    assert.deepEqual(
      await remoteListing('/data/app'),
      [
        'd 755 nested -> ',
        'd 755 nested/deeper -> ',
        'f 644 gone-later.txt -> ',
        'f 644 nested/deeper/blob.bin -> ',
        'f 644 nested/new\nline -> ',
        'f 644 nested/with spaces é.txt -> ',
        'f 644 readme.txt -> ',
        'f 755 run.sh -> ',
        'l 777 link-to-blob -> nested/deeper/blob.bin',
      ].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))),
    );

    // Nothing changed: nothing moves.
    assert.deepEqual(await json(['data', name, 'push', local, '/data/app']), {
      uploaded: 0,
      added: 0,
      deleted: 0,
      unchanged: 7,
      bytes: 0,
    });

    // One changed (same size, other bytes), one new, one deleted.
    await writeFile(join(local, 'readme.txt'), 'HELLO\n');
    await writeFile(join(local, 'nested/new file.txt'), 'new\n');
    await rm(join(local, 'gone-later.txt'));
    const dry = await json(['data', name, 'sync', local, 'app', '--dry-run']);
    assert.deepEqual(dry, { uploaded: 2, added: 1, deleted: 1, unchanged: 5, bytes: 10, dryRun: true });
    assert.equal(await sbx.files.read('/data/app/readme.txt'), 'hello\n', 'a dry run changes nothing');
    // Only the changed file is written again: the others keep the old time given them here.
    await sbx.commands.run("find /data/app -type f -exec touch -h -d '2000-01-01 00:00:00' {} +");
    const synced = await json(['data', name, 'sync', local, 'app']);
    assert.deepEqual(synced, { uploaded: 2, added: 1, deleted: 1, unchanged: 5, bytes: 10 });
    const years = await sbx.commands.run(
      "cd /data/app && find . -type f -printf '%TY %P\\n' | LC_ALL=C sort",
    );
    assert.match(years.stdout, /^2000 nested\/deeper\/blob\.bin$/m);
    assert.match(years.stdout, /^2000 run\.sh$/m);
    assert.doesNotMatch(years.stdout, /^2000 readme\.txt$/m);
    assert.equal(await sbx.files.read('/data/app/readme.txt'), 'HELLO\n');
    assert.equal(await sbx.files.read('/data/app/nested/new file.txt'), 'new\n');
    assert.equal(await sbx.files.exists('/data/app/gone-later.txt'), false);

    // Pulled into an empty directory, the tree is the same, byte for byte.
    const back = join(work, 'pulled');
    const pulled = await json(['data', name, 'pull', 'app', back]);
    assert.deepEqual(pulled, {
      downloaded: 7,
      added: 7,
      deleted: 0,
      unchanged: 0,
      bytes: 70_000 + 6 + 19 + 3 + 19 + 4,
    });
    for (const file of [
      'readme.txt',
      'nested/deeper/blob.bin',
      'nested/with spaces é.txt',
      'nested/new file.txt',
      'nested/new\nline',
      'run.sh',
    ])
      assert.ok((await readFile(join(back, file))).equals(await readFile(join(local, file))), file);
    assert.equal((await lstat(join(back, 'run.sh'))).mode & 0o777, 0o755);
    assert.equal(await readlink(join(back, 'link-to-blob')), 'nested/deeper/blob.bin');
    const again = await json(['data', name, 'pull', 'app', back]);
    assert.equal(again.downloaded, 0);
    assert.equal(again.unchanged, 7);

    // A directory that became a file here: the remote one goes, with what was in it.
    await rm(join(local, 'nested/deeper'), { recursive: true });
    await writeFile(join(local, 'nested/deeper'), 'a file now');
    assert.deepEqual(await json(['data', name, 'sync', local, 'app']), {
      uploaded: 1,
      added: 1,
      deleted: 1,
      unchanged: 6,
      bytes: 10,
    });
    assert.equal(await sbx.files.read('/data/app/nested/deeper'), 'a file now');
    assert.equal(
      (await sbx.commands.run('readlink /data/app/link-to-blob')).stdout,
      'nested/deeper/blob.bin\n',
    );
    // No scratch file of these runs is left in the sandbox's /tmp.
    assert.equal((await sbx.commands.run('find /tmp -maxdepth 1 -name ".aiva-data-*"')).stdout, '');
  });

  it('takes a sandbox id where a name goes, and says so plainly when it is for people', async () => {
    const local = join(work, 'by-id');
    await mkdir(local);
    await writeFile(join(local, 'one.txt'), '1');
    const r = await aiva('data', sbx.sandboxId, 'push', local, '/home/user/by-id');
    assert.equal(r.code, 0, explain(r));
    assert.equal(r.stdout, 'uploaded 1 (1 new, 1 B), deleted 0, unchanged 0\n');
    assert.equal(await sbx.files.read('/home/user/by-id/one.txt'), '1');
    // An empty tree pushed makes its directory there.
    await mkdir(join(work, 'empty'));
    assert.equal((await json(['data', sbx.sandboxId, 'push', join(work, 'empty'), 'empty'])).uploaded, 0);
    assert.equal((await sbx.commands.run('test -d /data/empty && echo dir')).stdout, 'dir\n');
  });

  it('refuses bad input with a clear error, changing nothing', async () => {
    const local = join(work, 'tree');
    const unknown = await aiva('data', 'no-such-env', 'push', local, 'x');
    assert.equal(unknown.code, 1, explain(unknown));
    assert.equal(
      unknown.stderr,
      'aiva: no environment or sandbox no-such-env (aiva status lists environments)\n',
    );

    for (const remote of ['../etc', 'app/../../etc', '/data/..']) {
      const r = await aiva('data', name, 'push', local, remote);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, /^aiva: the remote path .* has a "\.\." segment/);
    }
    const pullUp = await aiva('data', name, 'pull', '../etc', join(work, 'never'));
    assert.equal(pullUp.code, 1, explain(pullUp));
    assert.match(pullUp.stderr, /has a "\.\." segment/);

    const missing = await aiva('data', name, 'push', join(work, 'not-there'), 'x');
    assert.equal(missing.code, 1, explain(missing));
    assert.match(missing.stderr, /not-there does not exist/);

    const notDir = await aiva('data', name, 'pull', 'app/readme.txt', join(work, 'never'));
    assert.equal(notDir.code, 1, explain(notDir));
    assert.match(notDir.stderr, /is not a directory/);

    const badAction = await aiva('data', name, 'copy', local, 'x');
    assert.equal(badAction.code, 1, explain(badAction));
    assert.match(
      badAction.stderr,
      /value 'copy' is invalid for argument 'action'. Allowed choices are push, pull, sync/,
    );
    assert.equal(await sbx.files.exists('/data/x'), false);
  });

  it('refuses a stopped environment, naming how to start it', async () => {
    await sbx.pause();
    const r = await aiva('data', name, 'push', join(work, 'tree'), 'app');
    assert.equal(r.code, 1, explain(r));
    assert.equal(r.stderr, `aiva: environment ${name} is stopped; aiva start ${name}\n`);
    const info = await Sandbox.getInfo(sbx.sandboxId, opts);
    assert.equal(info.state, 'paused', 'it is left stopped');
  });
});

checkHostLeaks({ betweenNodes: true });
