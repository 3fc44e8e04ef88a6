// E2B's code interpreter against `aiva up` on containers, driven by the real
// `@e2b/code-interpreter` SDK: its default template (code-interpreter-v1, built once
// into the shared image store), state kept between runs, stdout, errors, matplotlib
// figures as PNG results, per-run env vars, contexts, and a run's timeout interrupting
// the kernel.
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { NotFoundError, Sandbox, TimeoutError } from '@e2b/code-interpreter';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

// Minutes the first time (Debian's scientific Python stack), then cached like base.
templateBuiltForFile('code-interpreter-v1');

aivaUpForFile();

describe('the code interpreter through @e2b/code-interpreter', () => {
  let sbx: Sandbox;

  before(async () => {
    const started = performance.now();
    sbx = await Sandbox.create({ timeoutMs: 300_000 });
    const created = performance.now();
    const first = await sbx.runCode('1+1');
    const ran = performance.now();
    assert.equal(first.text, '2');
    process.stderr.write(
      `# code interpreter: create ${((created - started) / 1000).toFixed(2)} s, first runCode ${((ran - created) / 1000).toFixed(3)} s\n`,
    );
  });

  test('state is kept between runs; stdout and execution counts come back', async () => {
    await sbx.runCode('x = 1');
    const r = await sbx.runCode('x += 1; x');
    assert.equal(r.text, '2');
    assert.equal(r.error, undefined);
    assert.equal(typeof r.executionCount, 'number');
    const out = await sbx.runCode('print("hello"); import sys; print("oops", file=sys.stderr)');
    assert.deepEqual(out.logs.stdout, ['hello\n']);
    assert.deepEqual(out.logs.stderr, ['oops\n']);
    assert.equal(out.executionCount, (r.executionCount ?? 0) + 1);
    assert.equal((await sbx.getInfo()).templateId, 'code-interpreter-v1');
  });

  test('an exception gives execution.error with its traceback, and the context stays usable', async () => {
    const r = await sbx.runCode('y = 5\n1 / 0');
    assert.ok(r.error, 'an error');
    assert.equal(r.error.name, 'ZeroDivisionError');
    assert.equal(r.error.value, 'division by zero');
    assert.match(r.error.traceback, /ZeroDivisionError/);
    assert.equal((await sbx.runCode('y')).text, '5');
  });

  test('a matplotlib plot comes back as a PNG result', async () => {
    const r = await sbx.runCode(
      'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [4, 1, 9])\nplt.show()',
    );
    assert.equal(r.error, undefined, r.error?.traceback);
    const png = r.results.find((x) => x.png)?.png;
    assert.ok(png, `a PNG among ${JSON.stringify(r.results.map((x) => x.formats()))}`);
    assert.equal(Buffer.from(png, 'base64').subarray(0, 8).toString('hex'), '89504e470d0a1a0a');
  });

  test('display data in every format E2B names: html, markdown, svg, jpeg, pdf, latex, json, javascript', async () => {
    const code = [
      'from IPython.display import display, HTML, Markdown, SVG, Latex, JSON, Javascript, Image',
      'import io, PIL.Image',
      'buf = io.BytesIO(); PIL.Image.new("RGB", (4, 3), "red").save(buf, format="JPEG")',
      'class Doc:',
      '    def _repr_pdf_(self): return b"%PDF-1.4 aiva"',
      'display(HTML("<b>bold</b>"), Markdown("# title"), SVG(\'<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>\'))',
      'display(Latex(r"$x^2$"), JSON({"a": [1, 2]}), Javascript("console.log(1)"), Image(buf.getvalue(), format="jpeg"), Doc())',
    ].join('\n');
    const r = await sbx.runCode(code);
    assert.equal(r.error, undefined, r.error?.traceback);
    const [html, md, svg, latex, json, js, jpeg, pdf] = r.results;
    assert.equal(r.results.length, 8, JSON.stringify(r.results.map((x) => x.formats())));
    assert.equal(html?.html, '<b>bold</b>');
    assert.equal(md?.markdown, '# title');
    assert.match(svg?.svg ?? '', /^<svg /);
    assert.equal(latex?.latex, '$x^2$');
    assert.deepEqual(json?.json, { a: [1, 2] });
    assert.equal(js?.javascript, 'console.log(1)');
    assert.equal(
      Buffer.from(jpeg?.jpeg ?? '', 'base64')
        .subarray(0, 3)
        .toString('hex'),
      'ffd8ff',
      'a JPEG',
    );
    assert.equal(Buffer.from(pdf?.pdf ?? '', 'base64').toString(), '%PDF-1.4 aiva');
    for (const x of r.results)
      assert.equal(x.isMainResult, false, 'display() results are not the main result');
  });

  test('per-run env vars are set for that run only', async () => {
    const r = await sbx.runCode('import os; os.environ.get("FOO")', { envs: { FOO: "it's bar" } });
    assert.equal(r.text, "it's bar");
    assert.equal((await sbx.runCode('import os; os.environ.get("FOO", "unset")')).text, 'unset');
  });

  test('contexts: created in a cwd, listed, independent, removed; an unknown one is a 404', async () => {
    const ctx = await sbx.createCodeContext({ cwd: '/tmp' });
    assert.equal(ctx.language, 'python');
    assert.equal(ctx.cwd, '/tmp');
    assert.equal((await sbx.runCode('import os; os.getcwd()', { context: ctx })).text, '/tmp');
    const notThere = await sbx.runCode('x', { context: ctx });
    assert.equal(notThere.error?.name, 'NameError');
    assert.ok((await sbx.listCodeContexts()).some((c) => c.id === ctx.id));
    await sbx.runCode('z = 3', { context: ctx });
    await sbx.restartCodeContext(ctx);
    assert.equal(
      (await sbx.runCode('z', { context: ctx })).error?.name,
      'NameError',
      'a restart loses state',
    );
    assert.equal(
      (await sbx.runCode('import os; os.getcwd()', { context: ctx })).text,
      '/tmp',
      'and keeps the cwd',
    );
    await sbx.removeCodeContext(ctx);
    assert.ok(!(await sbx.listCodeContexts()).some((c) => c.id === ctx.id));
    await assert.rejects(sbx.runCode('1', { context: ctx }), NotFoundError);
    await assert.rejects(sbx.createCodeContext({ language: 'cobol' }), /400/);
  });

  test('runs in one context wait their turn, in order; the wait is not counted against requestTimeoutMs', async () => {
    const order: string[] = [];
    const first = sbx.runCode('import time; time.sleep(2); "first"').then((r) => order.push(r.text ?? ''));
    await new Promise((r) => setTimeout(r, 300));
    const second = sbx.runCode('"second"', { requestTimeoutMs: 1000 }).then((r) => order.push(r.text ?? ''));
    await Promise.all([first, second]);
    assert.deepEqual(order, ['first', 'second']);
  });

  test('a run that outlives its timeoutMs is the SDK timeout error; the kernel is interrupted', async () => {
    await assert.rejects(
      sbx.runCode('import time\nwhile True: time.sleep(0.1)', { timeoutMs: 3000 }),
      (e: unknown) => e instanceof TimeoutError,
    );
    const next = await sbx.runCode('x', { timeoutMs: 10_000 });
    assert.equal(next.text, '2', 'state survives the interrupt');
  });

  test('the template answers to its alias code-interpreter; create-time envs reach its kernel', async () => {
    const other = await Sandbox.create('code-interpreter', { envs: { WHO: 'created' } });
    try {
      assert.equal((await other.runCode('21 * 2')).text, '42');
      const who = await other.runCode('import os; os.environ.get("WHO")');
      assert.equal(who.text, 'created', JSON.stringify(who.toJSON()));
    } finally {
      await other.kill();
    }
  });

  test('100 MiB of output streams through in bounded lines, and a slow reader holds the kernel, not the server', async () => {
    const code = "import sys\nfor i in range(1600): sys.stdout.write('x' * 65535 + '\\n')";
    const total = 1600 * 65536;
    let seen = 0;
    let longest = 0;
    const r = await sbx.runCode(code, {
      timeoutMs: 300_000,
      onStdout: (m) => {
        seen += m.line.length;
        longest = Math.max(longest, m.line.length);
      },
    });
    assert.equal(r.error, undefined, r.error?.traceback);
    assert.equal(seen, total);
    assert.ok(longest <= 64 * 1024, `lines of at most 64 KiB, not ${longest}`);

    // The same run read by a client that stops reading: the server keeps little of it.
    const serverRss = async () => {
      const ps = await sbx.commands.run(`ps -o rss= -p "$(pgrep -f '[c]ode-interpreter/server[.]js')"`, {
        user: 'root',
      });
      return Number(ps.stdout.trim()) / 1024;
    };
    const before = await serverRss();
    const res = await fetch(`${process.env.E2B_SANDBOX_URL}/execute`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'e2b-sandbox-id': sbx.sandboxId,
        'e2b-sandbox-port': '49999',
      },
      body: JSON.stringify({ code }),
    });
    assert.equal(res.status, 200);
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    // The first chunk is kept: it may end inside a line that the next one finishes.
    let text = decoder.decode((await reader.read()).value, { stream: true });
    await new Promise((r) => setTimeout(r, 5000));
    const held = await serverRss();
    const kernels = await sbx.commands.run(`ps -o stat= -p "$(pgrep -d, -f '[i]pykernel_launcher')"`, {
      user: 'root',
    });
    assert.match(kernels.stdout, /^\s*T/m, 'the kernel is stopped while its client does not read');
    // Without backpressure the server would hold the whole 100 MiB by now.
    assert.ok(
      held - before < 80,
      `the server grew by ${(held - before).toFixed(0)} MiB while its client did not read`,
    );
    let bytes = 0;
    for (;;) {
      const { done, value } = await reader.read();
      text += decoder.decode(value, { stream: !done });
      const lines = text.split('\n');
      text = lines.pop() ?? '';
      for (const line of lines) {
        const msg = JSON.parse(line) as { type: string; text?: string };
        if (msg.type === 'stdout') bytes += msg.text?.length ?? 0;
      }
      if (done) break;
    }
    assert.equal(bytes, total, 'nothing is lost while the kernel is held');
    process.stderr.write(
      `# code interpreter: server RSS ${before.toFixed(0)} MiB, ${held.toFixed(0)} MiB with a stalled client\n`,
    );
  });

  test('a kernel killed for memory gives a clear error; the next run gets a fresh kernel', async () => {
    const r = await sbx.runCode('hog = []\nwhile True: hog.append(bytearray(64 * 2**20))', {
      timeoutMs: 120_000,
    });
    assert.equal(r.error?.name, 'KernelDied', JSON.stringify(r.error));
    assert.match(r.error.value, /SIGKILL/);
    assert.equal((await sbx.runCode('2 * 21')).text, '42');
  });

  test('a kernel that dies gives an error; the next run gets a fresh kernel', async () => {
    const r = await sbx.runCode('import os; os._exit(3)');
    assert.equal(r.error?.name, 'KernelDied');
    const fresh = await sbx.runCode('1 + 1');
    assert.equal(fresh.text, '2');
    assert.equal((await sbx.runCode('x')).error?.name, 'NameError');
    await sbx.kill();
  });
});
