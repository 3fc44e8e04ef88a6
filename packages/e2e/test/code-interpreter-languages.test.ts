// The code interpreter's other languages against `aiva up` on containers, driven by the
// real `@e2b/code-interpreter` SDK: bash (aiva's own wrapper kernel) and R (Debian's
// IRkernel) keep state, split stdout from stderr, report errors, stop at a run's
// timeoutMs and stay usable, take per-run and sandbox env vars, and work in a context's
// cwd; java is refused with the reason. One sandbox for the file.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Sandbox, TimeoutError } from '@e2b/code-interpreter';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

// Minutes the first time (Debian's scientific Python stack and R), then cached.
templateBuiltForFile('code-interpreter-v1');

aivaUpForFile();

const seconds = (from: number) => ((performance.now() - from) / 1000).toFixed(2);

describe('bash, R and java through @e2b/code-interpreter', () => {
  let sbx: Sandbox;

  before(async () => {
    sbx = await Sandbox.create({ timeoutMs: 300_000, envs: { SBX_VAR: 'from-create' } });
  });

  test('bash: state, cwd, the sandbox env vars; stdout lines end in \\n', async () => {
    const started = performance.now();
    const first = await sbx.runCode('export FOO=bar', { language: 'bash' });
    process.stderr.write(`# bash kernel: first runCode ${seconds(started)} s\n`);
    assert.equal(first.error, undefined);
    const r = await sbx.runCode('echo $FOO', { language: 'bash' });
    assert.deepEqual(r.logs.stdout, ['bar\n']);
    await sbx.runCode('cd /tmp; greet() { echo "hi $1"; }', { language: 'bash' });
    const kept = await sbx.runCode('pwd; greet you; echo $SBX_VAR', { language: 'bash' });
    assert.deepEqual(kept.logs.stdout.join(''), '/tmp\nhi you\nfrom-create\n');
    await sbx.runCode('cd /home/user', { language: 'bash' });
  });

  test('bash: stdout and stderr come apart; a failing last command is an error', async () => {
    const both = await sbx.runCode('echo out; echo err >&2', { language: 'bash' });
    assert.deepEqual(both.logs.stdout, ['out\n']);
    assert.deepEqual(both.logs.stderr, ['err\n']);
    assert.equal(both.error, undefined);
    const failed = await sbx.runCode('ls /nonexistent', { language: 'bash' });
    assert.ok(failed.error, 'an error');
    // As E2B's bash kernel: no name, the exit status as the value.
    assert.equal(failed.error.name, '');
    assert.equal(failed.error.value, '2');
    assert.match(failed.logs.stderr.join(''), /No such file or directory/);
    assert.equal((await sbx.runCode('false; true', { language: 'bash' })).error, undefined);
  });

  test('bash: output streams as it comes', async () => {
    const at: number[] = [];
    const started = performance.now();
    await sbx.runCode('for i in 1 2 3; do echo $i; sleep 1; done', {
      language: 'bash',
      onStdout: () => {
        at.push(performance.now() - started);
      },
    });
    assert.equal(at.length, 3);
    assert.ok((at[2] ?? 0) - (at[0] ?? 0) > 1500, `lines at ${at.map((t) => t.toFixed(0)).join(', ')} ms`);
  });

  test('bash: timeoutMs interrupts sleep 300; the shell and its variables live on', async () => {
    await assert.rejects(
      sbx.runCode('kept=5; sleep 300; echo never', { language: 'bash', timeoutMs: 3000 }),
      (e: unknown) => e instanceof TimeoutError,
    );
    const started = performance.now();
    const next = await sbx.runCode('echo kept=$kept', { language: 'bash', timeoutMs: 10_000 });
    assert.deepEqual(next.logs.stdout, ['kept=5\n']);
    assert.ok(performance.now() - started < 5000, 'the next run does not wait for sleep 300');
  });

  test('bash: per-run env vars for that run only, quoted; exit gives an error and a new bash', async () => {
    const r = await sbx.runCode('echo "$FOO2"', { language: 'bash', envs: { FOO2: "it's $HOME" } });
    assert.deepEqual(r.logs.stdout, ["it's $HOME\n"]);
    const after = await sbx.runCode('echo "[$FOO2]"', { language: 'bash' });
    assert.deepEqual(after.logs.stdout, ['[]\n']);
    const over = await sbx.runCode('echo $SBX_VAR', { language: 'bash', envs: { SBX_VAR: 'overwrite' } });
    assert.deepEqual(over.logs.stdout, ['overwrite\n']);
    assert.deepEqual((await sbx.runCode('echo $SBX_VAR', { language: 'bash' })).logs.stdout, [
      'from-create\n',
    ]);
    const exited = await sbx.runCode('exit 4', { language: 'bash' });
    assert.equal(exited.error?.name, 'BashExited');
    const fresh = await sbx.runCode('echo alive; pwd; echo $SBX_VAR', { language: 'bash' });
    assert.equal(fresh.logs.stdout.join(''), 'alive\n/home/user\nfrom-create\n');
  });

  test('R: values as results[0].text, cwd, state, errors', async () => {
    const started = performance.now();
    const cwd = await sbx.runCode('getwd()', { language: 'r' });
    process.stderr.write(`# R kernel: first runCode ${seconds(started)} s\n`);
    assert.equal(cwd.results[0]?.text, '[1] "/home/user"');
    await sbx.runCode('v <- 41', { language: 'r' });
    assert.equal((await sbx.runCode('v + 1', { language: 'r' })).results[0]?.text, '[1] 42');
    const failed = await sbx.runCode('stop("boom")', { language: 'r' });
    assert.equal(failed.error?.name, 'ERROR');
    assert.match(failed.error?.value ?? '', /boom/);
    const out = await sbx.runCode('cat("to stdout\\n"); message("to stderr")', { language: 'r' });
    assert.deepEqual(out.logs.stdout, ['to stdout\n']);
    assert.match(out.logs.stderr.join(''), /to stderr/);
  });

  test('R: per-run env vars; timeoutMs interrupts and the session keeps its state', async () => {
    const r = await sbx.runCode('Sys.getenv("RVAR")', { language: 'r', envs: { RVAR: 'r "value"' } });
    assert.equal(r.results[0]?.text, '[1] "r \\"value\\""');
    const gone = await sbx.runCode('Sys.getenv("RVAR", unset = "unset")', { language: 'r' });
    assert.equal(gone.results[0]?.text, '[1] "unset"');
    assert.equal(
      (await sbx.runCode('Sys.getenv("SBX_VAR")', { language: 'r' })).results[0]?.text,
      '[1] "from-create"',
    );
    await assert.rejects(
      sbx.runCode('w <- 7; Sys.sleep(300)', { language: 'r', timeoutMs: 3000 }),
      (e: unknown) => e instanceof TimeoutError,
    );
    const next = await sbx.runCode('w * 6', { language: 'r', timeoutMs: 10_000 });
    assert.equal(next.results[0]?.text, '[1] 42');
  });

  test('contexts of bash and R run in their cwd', async () => {
    const b = await sbx.createCodeContext({ language: 'bash', cwd: '/tmp' });
    assert.deepEqual([b.language, b.cwd], ['bash', '/tmp']);
    assert.deepEqual((await sbx.runCode('pwd', { context: b })).logs.stdout, ['/tmp\n']);
    assert.equal((await sbx.runCode('echo $kept', { context: b })).logs.stdout.join(''), '\n');
    const r = await sbx.createCodeContext({ language: 'r', cwd: '/tmp' });
    assert.equal((await sbx.runCode('getwd()', { context: r })).results[0]?.text, '[1] "/tmp"');
    await sbx.removeCodeContext(b);
    await sbx.removeCodeContext(r);
  });

  test('java is refused with a 400 that says why', async () => {
    await assert.rejects(sbx.runCode('1 + 1', { language: 'java' }), /400 No Java kernel in this template/);
    await assert.rejects(sbx.createCodeContext({ language: 'java' }), /400 No Java kernel in this template/);
  });

  test('kernel sizes in the sandbox', async () => {
    const ps = await sbx.commands.run('ps -eo rss,args --sort=-rss');
    const lines = ps.stdout.split('\n').filter((l) => /bash_kernel|IRkernel|ipykernel|bash --norc/.test(l));
    process.stderr.write(
      `# kernels (RSS KiB, command):\n${lines.map((l) => `#   ${l.trim().slice(0, 90)}`).join('\n')}\n`,
    );
    assert.ok(lines.some((l) => l.includes('bash_kernel')));
    assert.ok(lines.some((l) => l.includes('IRkernel')));
    await sbx.kill();
  });
});
