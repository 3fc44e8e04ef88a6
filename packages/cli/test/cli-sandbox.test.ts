import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import {
  type CliResult,
  explain,
  type RunCliOptions,
  removeHome,
  runCli,
  tempHome,
} from './helpers/run-cli.js';

// Containers: this host has no real KVM, and microVMs under emulation are slow.
let home = '';
const aiva = (args: string[], options: RunCliOptions = {}) =>
  runCli(args, { ...options, env: { AIVA_HOME: home } });
const run = (...command: string[]) => aiva(['sandbox', 'run', '--rm', '-r', 'container', '--', ...command]);

interface ListedSandbox {
  id: string;
  driver: string;
  state: string;
}

async function listed(): Promise<ListedSandbox[]> {
  const r = await aiva(['sandbox', 'ls', '--json']);
  assert.equal(r.code, 0, explain(r));
  return JSON.parse(r.stdout) as ListedSandbox[];
}

/** The sandbox a run said it made ("sandbox <id> (container)" on stderr). */
const madeBy = (r: CliResult) => /^sandbox (\S+) \(container\)$/m.exec(r.stderr)?.[1];

describe('aiva sandbox', () => {
  before(async () => {
    home = await tempHome();
  });
  after(async () => {
    if (!home) return;
    // Whatever a failed test left running.
    for (const s of await listed().catch(() => [])) await aiva(['sandbox', 'kill', s.id]);
    await removeHome(home);
  });

  describe('run --rm with a command, as docker run does', () => {
    it('runs the argv as given: sh -c takes its script whole', async () => {
      const r = await run('sh', '-c', 'echo ok-$(id -un)');
      assert.equal(r.code, 0, explain(r));
      assert.equal(r.stdout, 'ok-user\n');
      assert.ok(madeBy(r), explain(r));
      const args = ['a b', "it's", '$HOME', '*', '', '"q"', '-n', ';', 'new\nline'];
      const p = await run('printf', '[%s]\\n', ...args);
      assert.equal(p.code, 0, explain(p));
      assert.equal(p.stdout, args.map((a) => `[${a}]\n`).join(''));
    });

    it('exits with the exit code of the command, with its stdout and stderr apart', async () => {
      const r = await run('sh', '-c', 'echo out; echo err >&2; exit 3');
      assert.equal(r.code, 3, explain(r));
      assert.equal(r.stdout, 'out\n');
      assert.match(r.stderr, /^err$/m);
    });

    it('exits 127 with a clear message when the program is not there', async () => {
      const r = await run('no-such-program', '--flag');
      assert.equal(r.code, 127, explain(r));
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /^aiva: no-such-program: command not found in the sandbox$/m);
    });

    it('exits 128 + the signal when the command is killed by one', async () => {
      const r = await run('sh', '-c', 'kill -KILL $$');
      assert.equal(r.code, 137, explain(r));
    });

    it('passes the options after the command to it, without --', async () => {
      const r = await aiva(['sandbox', 'run', '--rm', '-r', 'container', 'ls', '-d', '/']);
      assert.equal(r.code, 0, explain(r));
      assert.equal(r.stdout, '/\n');
    });

    it('streams the output as it comes', async () => {
      const started = Date.now();
      let firstAt = 0;
      const r = await aiva(
        ['sandbox', 'run', '--rm', '-r', 'container', 'sh', '-c', 'echo first; sleep 3; echo second'],
        {
          onStdout: (d) => {
            if (!firstAt && d.includes('first')) firstAt = Date.now();
          },
        },
      );
      const endedAt = Date.now();
      assert.equal(r.code, 0, explain(r));
      assert.equal(r.stdout, 'first\nsecond\n');
      assert.ok(
        firstAt > started && endedAt - firstAt >= 2500,
        'the first line came before the command ended',
      );
    });

    it('kills the sandbox and exits 130 when interrupted', async () => {
      const r = await aiva(['sandbox', 'run', '--rm', '-r', 'container', 'sleep', '60'], {
        interrupt: { stderr: /^sandbox \S+ \(container\)$/m, signal: 'SIGINT' },
      });
      assert.equal(r.code, 130, explain(r));
      assert.match(r.stderr, new RegExp(`^aiva: interrupted: killed sandbox ${madeBy(r)}$`, 'm'));
    });

    it('leaves no sandbox behind', async () => {
      assert.deepEqual(await listed(), []);
    });
  });

  it('run without a command prints an id; exec, ls, logs and kill work on it', async (t) => {
    // The sandbox lives between CLI commands, when this host's node is free: another test
    // run on the host that opens its node then (with a data directory of its own) removes
    // it as debris. If that happens, start again.
    for (let attempt = 1; ; attempt++) {
      const created = await aiva(['sandbox', 'run', '-r', 'container']);
      assert.equal(created.code, 0, explain(created));
      const id = created.stdout.trim();
      assert.match(id, /^[a-z0-9]{20}$/, explain(created));
      /** A step failed: was the sandbox taken away by another node in between? */
      const gone = async () => !(await listed()).some((s) => s.id === id && s.state === 'running');
      try {
        const exec = await aiva(['sandbox', 'exec', id, '--', 'sh', '-c', 'echo hi-$(id -un); exit 4']);
        assert.equal(exec.code, 4, explain(exec));
        assert.equal(exec.stdout, 'hi-user\n');
        const root = await aiva([
          'sandbox',
          'exec',
          '-u',
          'root',
          '-w',
          '/tmp',
          id,
          'sh',
          '-c',
          'id -un; pwd',
        ]);
        assert.equal(root.code, 0, explain(root));
        assert.equal(root.stdout, 'root\n/tmp\n');
        const flags = await aiva(['sandbox', 'exec', id, 'ls', '-d', '/']);
        assert.equal(flags.code, 0, explain(flags));
        assert.equal(flags.stdout, '/\n');
        const missing = await aiva(['sandbox', 'exec', id, 'no-such-program']);
        assert.equal(missing.code, 127, explain(missing));
        assert.match(missing.stderr, /^aiva: no-such-program: command not found in the sandbox$/m);

        const ls = await aiva(['sandbox', 'ls']);
        assert.equal(ls.code, 0, explain(ls));
        assert.match(ls.stdout, /^ID +RUNTIME +STATE +TEMPLATE +CPUS +MEMORY +ADDRESS +CREATED$/m);
        assert.match(ls.stdout, new RegExp(`^${id} +container +running +base `, 'm'));
        const json = (await listed()).find((s) => s.id === id);
        assert.deepEqual(
          { driver: json?.driver, state: json?.state },
          { driver: 'container', state: 'running' },
        );

        const logs = await aiva(['sandbox', 'logs', id]);
        assert.equal(logs.code, 0, explain(logs));
        assert.ok(logs.stdout.length > 0, 'the console has something');
      } catch (e) {
        if (attempt < 3 && (await gone())) {
          t.diagnostic(`attempt ${attempt}: sandbox ${id} was removed by another node; starting again`);
          continue;
        }
        await aiva(['sandbox', 'kill', id]);
        throw e;
      }

      const kill = await aiva(['sandbox', 'kill', id]);
      assert.equal(kill.code, 0, explain(kill));
      assert.equal(kill.stdout, `killed ${id}\n`);
      assert.ok(!(await listed()).some((s) => s.id === id), 'killed sandboxes are not listed');
      const again = await aiva(['sandbox', 'exec', id, 'true']);
      assert.equal(again.code, 1, explain(again));
      assert.equal(again.stderr, `aiva: sandbox ${id} does not exist\n`);
      return;
    }
  });

  it('kill, exec and logs of an unknown id fail and say so', async () => {
    const kill = await aiva(['sandbox', 'kill', 'nosuchsandbox']);
    assert.equal(kill.code, 1, explain(kill));
    assert.equal(kill.stderr, 'aiva: sandbox nosuchsandbox does not exist\n');
    const exec = await aiva(['sandbox', 'exec', 'nosuchsandbox', '--', 'true']);
    assert.equal(exec.code, 1, explain(exec));
    assert.equal(exec.stderr, 'aiva: sandbox nosuchsandbox does not exist\n');
    const logs = await aiva(['sandbox', 'logs', 'nosuchsandbox']);
    assert.equal(logs.code, 1, explain(logs));
    assert.match(logs.stderr, /^aiva: sandbox nosuchsandbox has no console log/);
  });

  it('bad options: commander says what is wrong, and nothing is created', async () => {
    const cases: [string[], RegExp][] = [
      [
        ['run', '--cpus', '0', '--', 'true'],
        /argument '0' is invalid\. cpus must be a positive whole number/,
      ],
      [['run', '--memory', 'lots'], /argument 'lots' is invalid\. memory must be a positive whole number/],
      [['run', '--runtime', 'nope'], /argument 'nope' is invalid\. runtime must be one of container, /],
      [['run', '-e', 'NOVALUE', '--', 'true'], /--env takes NAME=VALUE, not NOVALUE/],
      [['run', '--bogus'], /error: unknown option '--bogus'/],
      [['exec', 'someid'], /error: missing required argument 'command'/],
      [['exec', 'someid', '--'], /^aiva: no command to run: aiva sandbox exec <id> -- <command>/],
      [['kill'], /error: missing required argument 'id'/],
    ];
    for (const [args, message] of cases) {
      const r = await aiva(['sandbox', ...args]);
      assert.equal(r.code, 1, `${args.join(' ')}: ${explain(r)}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.equal(r.stdout, '');
    }
    assert.deepEqual(await listed(), []);
  });
});

checkHostLeaks({ betweenNodes: true });
