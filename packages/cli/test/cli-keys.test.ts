import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';

let home = '';
const aiva = (...args: string[]) => runCli(args, { env: { AIVA_HOME: home } });

/** The rows of `aiva keys ls`: id, name, key prefix (then scopes, created, expires, last used). */
function rows(stdout: string): { id: string; name: string; prefix: string }[] {
  const [header, ...lines] = stdout.trim().split('\n');
  assert.match(header ?? '', /^ID +NAME +KEY +SCOPES +CREATED +EXPIRES +LAST USED$/);
  return lines.map((l) => {
    const [id = '', name = '', prefix = ''] = l.split(/ {2,}/);
    return { id, name, prefix };
  });
}

/** Whether the server takes `key` (GET /v1/keys answers 200 with it, 401 without). */
async function accepted(up: RunningUp, key: string): Promise<boolean> {
  const r = await fetch(`${up.url}/v1/keys`, { headers: { 'x-api-key': key } });
  await r.arrayBuffer();
  return r.ok;
}

/** Creates a key, checks what `keys create` prints, and returns it with its id. */
async function create(name: string): Promise<{ id: string; key: string }> {
  const r = await aiva('keys', 'create', name);
  assert.equal(r.code, 0, explain(r));
  const id = new RegExp(`^created key (\\S+) \\(${name}\\); it is not shown again:$`, 'm').exec(
    r.stderr,
  )?.[1];
  assert.ok(id, explain(r));
  assert.match(r.stdout, /^e2b_[0-9a-f]{40}\n$/);
  return { id, key: r.stdout.trim() };
}

describe('aiva keys', () => {
  let up: RunningUp | undefined;
  before(async () => {
    home = await tempHome();
  });
  after(async () => {
    await up?.stop();
    if (home) await removeHome(home);
  });

  it('without a team yet, says to start the server once', async () => {
    const r = await aiva('keys', 'ls');
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /^aiva: there is no team yet: start the server once/);
  });

  it('through the running server: ls, create, rm', async () => {
    up = await startUp(home, ['--log-level', 'warn']);
    const credentials = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
      apiKey: string;
    };
    const first = await aiva('keys', 'ls');
    assert.equal(first.code, 0, explain(first));
    const [only, ...others] = rows(first.stdout);
    assert.deepEqual(others, []);
    assert.ok(only && credentials.apiKey.startsWith(only.prefix.replace(/…$|\.\.\.$/, '')), first.stdout);

    const ci = await create('ci');
    assert.ok(await accepted(up, ci.key), 'the new key works');
    assert.ok(rows((await aiva('keys', 'ls')).stdout).some((k) => k.id === ci.id && k.name === 'ci'));

    const rm = await aiva('keys', 'rm', ci.id);
    assert.equal(rm.code, 0, explain(rm));
    assert.equal(rm.stdout, `removed ${ci.id}\n`);
    assert.ok(!(await accepted(up, ci.key)), 'a removed key no longer works');
    assert.ok(!rows((await aiva('keys', 'ls')).stdout).some((k) => k.id === ci.id));

    const unknown = await aiva('keys', 'rm', 'key_nosuch');
    assert.equal(unknown.code, 1, explain(unknown));
    assert.equal(unknown.stderr, 'aiva: key key_nosuch not found\n');

    assert.equal(await up.stop(), 0, up.stderr());
    up = undefined;
  });

  it('in the database when no server runs: ls, create, rm', async () => {
    const before = rows((await aiva('keys', 'ls')).stdout);
    assert.equal(before.length, 1);
    const ci = await create('nightly');
    const listed = rows((await aiva('keys', 'ls')).stdout);
    assert.deepEqual(
      listed.map((k) => k.id),
      [before[0]?.id, ci.id],
    );
    const rm = await aiva('keys', 'rm', ci.id);
    assert.equal(rm.code, 0, explain(rm));
    assert.equal(rm.stdout, `removed ${ci.id}\n`);

    const unknown = await aiva('keys', 'rm', 'key_nosuch');
    assert.equal(unknown.code, 1, explain(unknown));
    assert.equal(unknown.stderr, 'aiva: key key_nosuch not found\n');

    const last = await aiva('keys', 'rm', before[0]?.id ?? '');
    assert.equal(last.code, 1, explain(last));
    assert.match(last.stderr, /last API key/);
  });

  it('bad arguments: commander says what is wrong', async () => {
    const r = await aiva('keys', 'create');
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /error: missing required argument 'name'/);
  });
});

checkHostLeaks({ betweenNodes: true });
