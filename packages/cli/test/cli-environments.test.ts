import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { Sandbox } from 'e2b';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { cliPath, explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';
import { until } from './helpers/until.js';

interface Env {
  name: string;
  state: string;
  sandboxID: string | null;
  volumeID: string;
  settings: Record<string, string>;
}

let home = '';
let userHome = '';
let up: RunningUp | undefined;
/** The first aiva up's output (AIVA_TEST_KEEP_LOG=file keeps both). */
let earlierLog = '';
const aiva = (args: string[]) => runCli(args, { env: { AIVA_HOME: home, HOME: userHome } });

async function status(name: string): Promise<Env> {
  const r = await aiva(['status', name, '--format', 'json']);
  assert.equal(r.code, 0, explain(r));
  const [env] = JSON.parse(r.stdout) as Env[];
  assert.ok(env);
  return env;
}

async function credentials(): Promise<{ apiUrl: string; apiKey: string }> {
  return JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
    apiUrl: string;
    apiKey: string;
  };
}

async function sandboxOf(env: Env): Promise<Sandbox> {
  assert.ok(env.sandboxID, `environment ${env.name} has no sandbox`);
  const { apiUrl, apiKey } = await credentials();
  return Sandbox.connect(env.sandboxID, { apiKey, apiUrl, sandboxUrl: apiUrl });
}

const root = { user: 'root' as const };

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

describe('aiva environments (init, start, stop, deploy, logs, config, rm)', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    home = await tempHome();
    userHome = await mkdtemp(join(tmpdir(), 'aiva-user-'));
    up = await startUp(home);
  });
  after(async () => {
    for (const name of ['app', 'other', 'ports']) await aiva(['rm', name, '--force']).catch(() => undefined);
    await up?.stop();
    if (process.env.AIVA_TEST_KEEP_LOG)
      await writeFile(
        process.env.AIVA_TEST_KEEP_LOG,
        `${earlierLog}${up?.stdout() ?? ''}${up?.stderr() ?? ''}`,
      );
    await removeHome(home);
    await rm(userHome, { recursive: true, force: true });
  });

  it('keeps the files in / and in /data across stop and start and a restart of aiva up; aiva data syncs a changed tree into /data', async () => {
    let r = await aiva(['init', 'app']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['start', 'app']);
    assert.equal(r.code, 0, explain(r));
    let env = await status('app');
    assert.equal(env.state, 'running');
    const first = env.sandboxID;
    let sbx = await sandboxOf(env);
    const info = await sbx.getInfo();
    assert.equal(info.metadata['aiva.environment'], 'app');
    assert.ok(
      info.endAt.getUTCFullYear() >= 9999,
      `an environment's sandbox has no end: ${info.endAt.toISOString()}`,
    );
    await sbx.commands.run('echo in-root > /kept-root.txt && echo in-data > /data/kept-data.txt', root);

    r = await aiva(['stop', 'app']);
    assert.equal(r.code, 0, explain(r));
    assert.equal((await status('app')).state, 'stopped');
    r = await aiva(['start', 'app']);
    assert.equal(r.code, 0, explain(r));
    env = await status('app');
    assert.equal(env.sandboxID, first, 'the kept sandbox is started again');
    sbx = await sandboxOf(env);
    assert.equal(
      (await sbx.commands.run('cat /kept-root.txt /data/kept-data.txt')).stdout,
      'in-root\nin-data\n',
    );

    // aiva up restarted on the same home: the environment comes back by itself.
    await up?.stop();
    earlierLog += `${up?.stdout() ?? ''}${up?.stderr() ?? ''}`;
    up = await startUp(home);
    env = await until('the environment back', async () => {
      const e = await status('app');
      return e.state === 'running' ? e : undefined;
    });
    sbx = await sandboxOf(env);
    assert.equal(
      (await sbx.commands.run('cat /kept-root.txt /data/kept-data.txt')).stdout,
      'in-root\nin-data\n',
    );
    const listed = await Sandbox.list({
      ...(await credentials()),
      query: { metadata: { 'aiva.environment': 'app' } },
    }).nextItems();
    assert.deepEqual(
      listed.map((s) => s.sandboxId),
      [env.sandboxID],
      'GET /v2/sandboxes lists it by its metadata',
    );

    // aiva data into the environment's volume: a tree synced, changed here, synced again.
    const tree = await mkdtemp(join(tmpdir(), 'aiva-site-'));
    try {
      for (const [f, text] of [
        ['a.txt', 'a1\n'],
        ['b.txt', 'b1\n'],
        ['d.txt', 'd1\n'],
      ] as const)
        await writeFile(join(tree, f), text);
      const sync = async () => {
        const s = await aiva(['data', 'app', 'sync', tree, 'site', '--json']);
        assert.equal(s.code, 0, explain(s));
        return JSON.parse(s.stdout) as Record<string, number>;
      };
      assert.deepEqual(await sync(), { uploaded: 3, added: 3, deleted: 0, unchanged: 0, bytes: 9 });
      await writeFile(join(tree, 'a.txt'), 'a2\n');
      await rm(join(tree, 'b.txt'));
      await writeFile(join(tree, 'c.txt'), 'c1\n');
      assert.deepEqual(await sync(), { uploaded: 2, added: 1, deleted: 1, unchanged: 1, bytes: 6 });
      assert.equal(
        (await sbx.commands.run('cd /data/site && ls && cat a.txt c.txt d.txt')).stdout,
        'a.txt\nc.txt\nd.txt\na2\nc1\nd1\n',
      );
    } finally {
      await rm(tree, { recursive: true, force: true });
    }
  });

  it('deploys a directory as a service that is restarted on crash, with logs -f', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aiva-app-'));
    await writeFile(join(dir, 'Procfile'), 'web: sh run.sh\n');
    await writeFile(
      join(dir, 'run.sh'),
      'echo "service up as $$ with FOO=$FOO"\nwhile true; do sleep 1; done\n',
    );
    let r = await aiva(['config', 'app', 'set', 'env.FOO=bar']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['deploy', 'app', dir, '--restart', 'on-failure']);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /service: sh run\.sh \(restart on-failure\)/);
    await rm(dir, { recursive: true });
    const logged = await until('the service to start', async () => {
      const l = await aiva(['logs', 'app', '--tail', '5']);
      return /service up as (\d+) with FOO=bar/.exec(l.stdout)?.[1];
    });
    const env = await status('app');
    const sbx = await sandboxOf(env);

    // logs -f prints what is written after it started.
    const follow = spawn(process.execPath, [cliPath, 'logs', 'app', '-f', '--tail', '0'], {
      env: { ...process.env, AIVA_HOME: home, HOME: userHome },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let followed = '';
    follow.stdout.setEncoding('utf8').on('data', (d: string) => {
      followed += d;
    });
    try {
      // Following once a line written to the log reaches it (the CLI takes a second or
      // more to start, and follows from the end it found then): written until it does.
      await until('logs -f to follow', async () => {
        if (followed.includes('[test] following')) return true;
        await sbx.commands.run('echo "[test] following" >> /var/log/aiva/service.log', root);
        return undefined;
      });
      await sbx.commands.run(`kill -KILL ${logged}`, root);
      const again = await until('the service to be started again', async () => {
        const m = [...followed.matchAll(/service up as (\d+)/g)].map((x) => x[1]);
        return m.find((pid) => pid !== logged);
      });
      assert.match(followed, /service exited with code 137/);
      assert.equal((await sbx.commands.run(`kill -0 ${again} && echo alive`, root)).stdout, 'alive\n');
    } finally {
      follow.kill();
    }

    // The service starts again with the environment.
    r = await aiva(['stop', 'app']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['start', 'app']);
    assert.equal(r.code, 0, explain(r));
    await until('the service after start', async () => {
      const l = await aiva(['logs', 'app', '--tail', '3']);
      return /starting: sh run\.sh\n(.*\n)?service up as/.test(l.stdout.split('service stopped').at(-1) ?? '')
        ? true
        : undefined;
    });
  });

  it('forwards a host port to the environment while it runs, and not after stop', async () => {
    const port = await freePort();
    let r = await aiva(['config', 'app', 'set', 'cmd=exec python3 -m http.server 8000', 'restart=always']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['stop', 'app']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['start', 'app', '--port', `${port}:8000`]);
    assert.equal(r.code, 0, explain(r));
    assert.equal((await aiva(['config', 'app', 'get', 'ports'])).stdout, `127.0.0.1:${port}:8000\n`);
    const page = await until('the service behind the host port', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/`);
      return res.ok ? res.text() : undefined;
    });
    assert.match(page, /Directory listing for \//);
    r = await aiva(['stop', 'app']);
    assert.equal(r.code, 0, explain(r));
    assert.equal(await listening(port), false, 'stop closes the host port');
    r = await aiva(['start', 'app']);
    assert.equal(r.code, 0, explain(r));
    assert.equal(await listening(port), true, 'start opens it again');
  });

  it('deploys a template: a fresh sandbox from it, with the same volume and service', async () => {
    const before = await status('app');
    const r = await aiva(['deploy', 'app', 'base']);
    assert.equal(r.code, 0, explain(r));
    const env = await status('app');
    assert.notEqual(env.sandboxID, before.sandboxID);
    assert.equal(env.volumeID, before.volumeID);
    const sbx = await sandboxOf(env);
    assert.equal((await sbx.commands.run('cat /data/kept-data.txt')).stdout, 'in-data\n');
    await until('the service in the fresh sandbox', async () => {
      const l = await aiva(['logs', 'app', '--tail', '5']);
      return /starting: exec python3 -m http\.server 8000/.test(l.stdout) ? true : undefined;
    });
  });

  it('refuses bad input with a clear error and leaves nothing behind', async () => {
    let r = await aiva(['init', 'app']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /an environment named "app" already exists/);
    r = await aiva(['init', 'Bad_Name']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /environment name "Bad_Name" is not valid: a lower-case letter or digit/);

    // A host port already bound: a 409 naming it, and no sandbox nor listener left.
    r = await aiva(['init', 'ports']);
    assert.equal(r.code, 0, explain(r));
    const free = await freePort();
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const taken = (holder.address() as { port: number }).port;
    try {
      r = await aiva(['start', 'ports', '--port', `${free}:8000`, '--port', `${taken}:8001`]);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, new RegExp(`host port 127\\.0\\.0\\.1:${taken} is already in use`));
      assert.equal(await listening(free), false, 'the port bound before the refused one is let go');
      const env = await status('ports');
      assert.equal(env.state, 'stopped');
      assert.equal(env.sandboxID, null);
    } finally {
      holder.close();
    }

    // A bad config.yaml: its line and column.
    await mkdir(join(userHome, '.aiva'), { recursive: true });
    const file = join(userHome, '.aiva', 'config.yaml');
    await writeFile(file, 'defaults:\n  template: base\n  profil: standard\n');
    r = await aiva(['init', 'other']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${file}:3:3: unknown key "profil" in defaults`));
    await writeFile(file, 'profiles:\n  tiny:\n    cpus: many\n');
    r = await aiva(['init', 'other', '--profile', 'tiny']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`${file}:3:11: profiles.tiny.cpus must be a whole number`));
    await writeFile(file, 'profiles:\n  tiny:\n    cpus: 1\n    memory: 256M\n');
    r = await aiva(['init', 'other', '--profile', 'tiny']);
    assert.equal(r.code, 0, explain(r));
    r = await aiva(['config', 'other', 'get', 'memory']);
    assert.equal(r.stdout, '256\n');
    r = await aiva(['config', 'other', 'set', 'colour=blue']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown setting "colour"/);

    // rm refuses a running environment without --force; with it, nothing is left.
    let env = await status('app');
    r = await aiva(['rm', 'app']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /environment "app" is running: stop it first, or remove it with --force/);
    r = await aiva(['rm', 'app', '--force']);
    assert.equal(r.code, 0, explain(r));
    for (const name of ['ports', 'other']) {
      r = await aiva(['rm', name]);
      assert.equal(r.code, 0, explain(r));
    }
    r = await aiva(['status', '--format', 'json']);
    assert.deepEqual(JSON.parse(r.stdout), []);
    const left = await Sandbox.list({ ...(await credentials()) }).nextItems();
    assert.deepEqual(left, []);
    await assert.rejects(stat(join(home, 'volumes', env.volumeID)), { code: 'ENOENT' });
    env = undefined as unknown as Env;
  });
});

checkHostLeaks({ betweenNodes: true });
