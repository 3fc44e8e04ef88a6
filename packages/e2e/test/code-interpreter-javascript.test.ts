// JavaScript and TypeScript in E2B's code interpreter on `aiva up` (containers), driven by
// the real `@e2b/code-interpreter` SDK, as E2B's own JS tests expect them
// (defaultKernels, cwd, env_vars/js): console output, ESM imports, top-level await and
// Promise results, TypeScript, the working directory, state between runs, errors,
// per-run env vars, a `ts` context in its own cwd, and a timeout interrupting the kernel
// (which loses the JavaScript context's state, as the error says).
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Sandbox, TimeoutError } from '@e2b/code-interpreter';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

// Minutes the first time (Debian's scientific Python stack), then cached like base.
templateBuiltForFile('code-interpreter-v1');

aivaUpForFile();

describe('JavaScript and TypeScript through @e2b/code-interpreter', () => {
  let sbx: Sandbox;

  before(async () => {
    sbx = await Sandbox.create({ timeoutMs: 300_000, envs: { SANDBOX_VAR: 'from create' } });
    const started = performance.now();
    const first = await sbx.runCode('console.log("Hello World!")', { language: 'js' });
    const ran = performance.now();
    assert.deepEqual(first.logs.stdout, ['Hello World!\n']);
    assert.equal(first.error, undefined);
    process.stderr.write(
      `# javascript: first run (starts the kernel) ${((ran - started) / 1000).toFixed(2)} s\n`,
    );
  });

  test('ESM imports, top-level await and Promise results, TypeScript, the cwd', async () => {
    const imported = await sbx.runCode(
      "import { readFileSync } from 'fs'\nconsole.log(typeof readFileSync)",
      {
        language: 'javascript',
      },
    );
    assert.deepEqual(imported.logs.stdout, ['function\n']);
    const awaited = await sbx.runCode("await Promise.resolve('Hello World!')", { language: 'js' });
    assert.equal(awaited.text, 'Hello World!');
    const promised = await sbx.runCode("new Promise((r) => setTimeout(() => r('later'), 50))", {
      language: 'js',
    });
    assert.equal(promised.text, 'later');
    const ts = await sbx.runCode('const message: string = "Hello World!"; console.log(message)', {
      language: 'typescript',
    });
    assert.equal(ts.error, undefined, ts.error?.value);
    assert.deepEqual(ts.logs.stdout, ['Hello World!\n']);
    for (const language of ['js', 'ts'])
      assert.equal((await sbx.runCode('process.cwd()', { language })).text, '/home/user');
  });

  test('state is kept between runs, with and without top-level await', async () => {
    await sbx.runCode('const a = 1; let b = 2', { language: 'js' });
    assert.equal((await sbx.runCode('a + b', { language: 'js' })).text, '3');
    await sbx.runCode('const c = await Promise.resolve(40); function f() { return c + 2 }', {
      language: 'js',
    });
    assert.equal((await sbx.runCode('f()', { language: 'js' })).text, '42');
  });

  test('a thrown error is execution.error; the context stays usable', async () => {
    const r = await sbx.runCode("throw new Error('boom')", { language: 'js' });
    assert.equal(r.error?.name, 'Error');
    assert.equal(r.error?.value, 'boom');
    const syntax = await sbx.runCode('1 +', { language: 'ts' });
    assert.equal(syntax.error?.name, 'SyntaxError');
    assert.doesNotMatch(syntax.error?.value ?? '', /cell\.ts/);
    assert.equal((await sbx.runCode('a', { language: 'js' })).text, '1');
  });

  test("per-run env vars are set for that run only; the sandbox's are there", async () => {
    assert.equal((await sbx.runCode('process.env.SANDBOX_VAR', { language: 'js' })).text, 'from create');
    const r = await sbx.runCode('process.env.FOO', { language: 'js', envs: { FOO: "it's bar" } });
    assert.equal(r.text, "it's bar");
    assert.equal((await sbx.runCode('process.env.FOO ?? "unset"', { language: 'js' })).text, 'unset');
  });

  test('a context made with language ts in a cwd', async () => {
    const ctx = await sbx.createCodeContext({ language: 'ts', cwd: '/tmp' });
    assert.equal(ctx.language, 'typescript');
    assert.equal(ctx.cwd, '/tmp');
    const r = await sbx.runCode('const n: number = 2; process.cwd() + " " + n * 21', { context: ctx });
    assert.equal(r.text, '/tmp 42');
    assert.equal((await sbx.runCode('typeof a', { context: ctx })).text, 'undefined', 'its own state');
    await sbx.removeCodeContext(ctx);
  });

  test('a run that outlives its timeoutMs is the SDK timeout error; the JS state is lost', async () => {
    await sbx.runCode('var kept = 5', { language: 'js' });
    await assert.rejects(
      sbx.runCode('while (true) {}', { language: 'js', timeoutMs: 3000 }),
      (e: unknown) => e instanceof TimeoutError,
    );
    const next = await sbx.runCode('typeof kept', { language: 'js', timeoutMs: 15_000 });
    assert.equal(next.error, undefined, next.error?.value);
    assert.equal(next.text, 'undefined', 'an interrupt restarts the JavaScript session');
    assert.equal((await sbx.runCode('21 * 2', { language: 'js' })).text, '42');
    const env = await sbx.runCode('process.env.SANDBOX_VAR', { language: 'js' });
    assert.equal(env.text, 'from create', "the sandbox's env vars are set again in the new session");
    // Python's default context was not touched.
    assert.equal((await sbx.runCode('6 * 7')).text, '42');
    await sbx.kill();
  });
});
