// sandbox.commands through the real e2b SDK against envd in a throwaway sandbox.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommandExitError, TimeoutError } from 'e2b';
import { eventually, rawClients, sdk, useSandbox } from './helpers/sandbox.js';

const sandbox = useSandbox({
  init: { defaultUser: 'user', defaultWorkdir: '/home/user', envVars: { FROM_INIT: 'init', SHARED: 'init' } },
});

describe('commands.run', () => {
  test('runs a command as the default user with its groups, HOME, USER and cwd', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('id; echo "$HOME|$USER|$LOGNAME"; pwd');
    const [id, env, cwd] = r.stdout.trim().split('\n');
    assert.equal(id, 'uid=1000(user) gid=1000(user) groups=1000(user),27(sudo)');
    assert.equal(env, '/home/user|user|user');
    assert.equal(cwd, '/home/user');
    assert.equal(r.exitCode, 0);
    assert.equal(r.stderr, '');
  });

  test('runs as another user when asked (Basic auth user)', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('id -un; echo $HOME; pwd', { user: 'root', cwd: '/' });
    assert.deepEqual(r.stdout.trim().split('\n'), ['root', '/root', '/']);
  });

  test('the user can use sudo (supplementary group sudo is set)', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('sudo -n id -u');
    assert.equal(r.stdout.trim(), '0');
  });

  test('separates stdout and stderr and streams them to callbacks', async () => {
    const sbx = await sdk();
    const out: string[] = [];
    const err: string[] = [];
    const r = await sbx.commands.run('echo one; echo two >&2; echo three', {
      onStdout: (d) => {
        out.push(d);
      },
      onStderr: (d) => {
        err.push(d);
      },
    });
    assert.equal(r.stdout, 'one\nthree\n');
    assert.equal(r.stderr, 'two\n');
    assert.equal(out.join(''), 'one\nthree\n');
    assert.equal(err.join(''), 'two\n');
  });

  test('large output arrives whole, in chunks of at most 32 KiB', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('head -c 3000000 /dev/zero | tr "\\0" a');
    assert.equal(r.stdout.length, 3_000_000);
    assert.ok(/^a+$/.test(r.stdout));
  });

  test('a slow consumer still gets all the output of a command that already exited', async () => {
    const sbx = await sdk();
    let seen = 0;
    const r = await sbx.commands.run('head -c 12000000 /dev/zero | tr "\\0" b', {
      onStdout: async (d) => {
        seen += d.length;
        await new Promise((resolve) => setTimeout(resolve, 2));
      },
    });
    assert.equal(r.stdout.length, 12_000_000);
    assert.equal(seen, 12_000_000);
  });

  test('exit codes: non-zero throws CommandExitError with the status', async () => {
    const sbx = await sdk();
    await assert.rejects(sbx.commands.run('echo out; echo err >&2; exit 3'), (e: unknown) => {
      assert.ok(e instanceof CommandExitError);
      assert.equal(e.exitCode, 3);
      assert.equal(e.error, 'exit status 3');
      assert.equal(e.stdout, 'out\n');
      assert.equal(e.stderr, 'err\n');
      return true;
    });
  });

  test('env vars: request envs override sandbox envs, which override HOME/USER', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('echo "$FROM_INIT|$SHARED|$MINE|$USER"', {
      envs: { SHARED: 'request', MINE: 'mine', USER: 'someone' },
    });
    assert.equal(r.stdout.trim(), 'init|request|mine|someone');
  });

  test('cwd: relative to the home, and a missing cwd is an invalid argument', async () => {
    const sbx = await sdk();
    await sbx.commands.run('mkdir -p sub/dir');
    assert.equal((await sbx.commands.run('pwd', { cwd: 'sub/dir' })).stdout.trim(), '/home/user/sub/dir');
    await assert.rejects(
      sbx.commands.run('pwd', { cwd: '/does/not/exist' }),
      /cwd '\/does\/not\/exist' does not exist/,
    );
  });

  test('a command that cannot be executed is an invalid argument, not a crash', async () => {
    const { process } = rawClients();
    const stream = process.start({ process: { cmd: '/no/such/binary', args: [] } });
    await assert.rejects(
      (async () => {
        for await (const _ of stream) {
        }
      })(),
      /invalid_argument|cannot execute '\/no\/such\/binary'/,
    );
  });

  test('background: handle, list, kill', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('sleep 600', { background: true });
    assert.ok(h.pid > 1);
    const listed = await sbx.commands.list();
    const mine = listed.find((p) => p.pid === h.pid);
    assert.ok(mine, `pid ${h.pid} not in ${JSON.stringify(listed)}`);
    assert.equal(mine.cmd, '/bin/bash');
    assert.deepEqual(mine.args, ['-l', '-c', 'sleep 600']);
    assert.equal(await sbx.commands.kill(h.pid), true);
    await assert.rejects(
      h.wait(),
      (e: unknown) => e instanceof CommandExitError && e.error === 'signal: killed',
    );
    assert.equal(h.exitCode, -1);
    assert.equal(
      (await sbx.commands.list()).some((p) => p.pid === h.pid),
      false,
    );
    assert.equal(await sbx.commands.kill(h.pid), false, 'killing an ended process reports false');
  });

  test('SIGTERM through the raw API ends a process with "signal: terminated"', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('sleep 600', { background: true });
    const { process } = rawClients({ authorization: `Basic ${Buffer.from('user:').toString('base64')}` });
    await process.sendSignal({ process: { selector: { case: 'pid', value: h.pid } }, signal: 15 });
    await assert.rejects(
      h.wait(),
      (e: unknown) => e instanceof CommandExitError && e.error === 'signal: terminated',
    );
  });

  test('stdin: sendStdin feeds the process and closeStdin ends its input', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('cat; echo done', { background: true, stdin: true });
    await sbx.commands.sendStdin(h.pid, 'hello ');
    await h.sendStdin('world\n');
    await h.closeStdin();
    const r = await h.wait();
    assert.equal(r.stdout, 'hello world\ndone\n');
  });

  test('without stdin:true the command reads /dev/null (no hang)', async () => {
    const sbx = await sdk();
    const r = await sbx.commands.run('cat; echo eof');
    assert.equal(r.stdout, 'eof\n');
    const { process } = rawClients();
    const h = await sbx.commands.run('sleep 600', { background: true });
    await assert.rejects(
      process.sendInput({
        process: { selector: { case: 'pid', value: h.pid } },
        input: { input: { case: 'stdin', value: new TextEncoder().encode('x') } },
      }),
      /failed_precondition|stdin is not enabled/,
    );
    await h.kill();
  });

  test('connect: a second client follows a running command to its end, by pid and by tag', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('read line; echo "got $line"; exit 4', {
      background: true,
      stdin: true,
    });
    const other = await sdk();
    const follower = await other.commands.connect(h.pid);
    assert.equal(follower.pid, h.pid);
    await sbx.commands.sendStdin(h.pid, 'x\n');
    await assert.rejects(follower.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === 4);
    assert.equal(follower.stdout, 'got x\n');
    await assert.rejects(h.wait(), (e: unknown) => e instanceof CommandExitError && e.stdout === 'got x\n');

    const { process } = rawClients();
    const tagged = process.start({ process: { cmd: '/bin/sleep', args: ['600'] }, tag: 'my-tag' });
    const it = tagged[Symbol.asyncIterator]();
    const first = await it.next();
    assert.equal(first.value?.event?.event.case, 'start');
    const pid = first.value?.event?.event.case === 'start' ? first.value.event.event.value.pid : 0;
    const byTag = process.connect({ process: { selector: { case: 'tag', value: 'my-tag' } } });
    const it2 = byTag[Symbol.asyncIterator]();
    const start2 = await it2.next();
    assert.deepEqual(start2.value?.event?.event, { case: 'start', value: start2.value?.event?.event.value });
    assert.equal(start2.value?.event?.event.case === 'start' && start2.value.event.event.value.pid, pid);
    const listed = await process.list({});
    assert.equal(listed.processes.find((p) => p.pid === pid)?.tag, 'my-tag');
    await process.sendSignal({ process: { selector: { case: 'tag', value: 'my-tag' } }, signal: 9 });
    const ends: string[] = [];
    for await (const m of byTag) if (m.event?.event.case === 'end') ends.push(m.event.event.value.status);
    assert.deepEqual(ends, ['signal: killed']);
    await it.return?.();
  });

  test('the end of a process is kept for a late connect', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('exit 7', { background: true });
    await assert.rejects(h.wait());
    const late = await sbx.commands.connect(h.pid);
    await assert.rejects(late.wait(), (e: unknown) => e instanceof CommandExitError && e.exitCode === 7);
  });

  test('connect to a pid that does not exist is not_found', async () => {
    const sbx = await sdk();
    await assert.rejects(sbx.commands.connect(999_999), /not found/);
    assert.equal(await sbx.commands.kill(999_999), false);
  });

  test('timeoutMs kills the command at the deadline (deadline_exceeded)', async () => {
    const sbx = await sdk();
    const marker = `/tmp/timeout-${Date.now()}`;
    await assert.rejects(
      sbx.commands.run(`sleep 600; touch ${marker}`, { timeoutMs: 500 }),
      (e: unknown) => e instanceof TimeoutError,
    );
    await eventually(
      async () => !(await sbx.commands.list()).some((p) => p.args.join(' ').includes(marker)),
      'the timed-out command to be gone',
    );
    assert.equal(await sbx.files.exists(marker), false);
  });

  test('a client that goes away leaves its command running', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('sleep 600', { background: true });
    await h.disconnect();
    assert.ok((await sbx.commands.list()).some((p) => p.pid === h.pid));
    assert.equal(await sbx.commands.kill(h.pid), true);
  });

  test('keepalives are sent on an idle stream at Keepalive-Ping-Interval', async () => {
    const { process } = rawClients({ 'keepalive-ping-interval': '1' });
    const kinds: string[] = [];
    for await (const m of process.start({ process: { cmd: '/bin/sleep', args: ['2.5'] } })) {
      kinds.push(m.event?.event.case ?? '?');
    }
    assert.equal(kinds[0], 'start');
    assert.equal(kinds.at(-1), 'end');
    assert.ok(kinds.includes('keepalive'), kinds.join(','));
  });

  test('StreamInput feeds a process in order', async () => {
    const sbx = await sdk();
    const h = await sbx.commands.run('head -c 6; echo', { background: true, stdin: true });
    const { process } = rawClients();
    const sel = { selector: { case: 'pid' as const, value: h.pid } };
    async function* input() {
      yield { event: { case: 'start' as const, value: { process: sel } } };
      for (const s of ['ab', 'cd', 'ef']) {
        yield {
          event: {
            case: 'data' as const,
            value: { input: { input: { case: 'stdin' as const, value: new TextEncoder().encode(s) } } },
          },
        };
      }
    }
    await process.streamInput(input());
    assert.equal((await h.wait()).stdout, 'abcdef\n');
  });

  test('nothing is left behind: no children, no zombies, fds back to where they were', async () => {
    const s = sandbox();
    const sbx = await sdk();
    await sbx.commands.run('true');
    const fds = await s.envdFds();
    for (let i = 0; i < 20; i++) await sbx.commands.run('echo $RANDOM');
    const { process } = rawClients();
    for (let i = 0; i < 10; i++) {
      const failing = process.start({
        process: { cmd: '/no/such/thing', args: [] },
        pty: i % 2 ? { size: { cols: 80, rows: 24 } } : undefined,
      });
      await assert.rejects(
        (async () => {
          for await (const _ of failing) {
          }
        })(),
        /cannot execute/,
      );
    }
    await eventually(async () => (await s.envdChildren()).length === 0, 'envd to have no children');
    await eventually(async () => (await s.envdFds()) <= fds + 4, `envd fds to settle (was ${fds})`);
    assert.deepEqual(await s.zombies(), []);
  });
});
