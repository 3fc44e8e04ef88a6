// The code interpreter on microVMs: `aiva up --runtime qemu-microvm` and the real
// `@e2b/code-interpreter` SDK. The first sandbox boots, starts the template's
// code-interpreter server and waits for its Python kernel to be warm; the template's VM
// snapshot is taken then, so later sandboxes are restored with the kernel already warm
// and still get their own create-time env vars.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Sandbox, TimeoutError } from '@e2b/code-interpreter';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

templateBuiltForFile('code-interpreter-v1');

aivaUpForFile(['--runtime', 'qemu-microvm']);

test('the code interpreter in a microVM, warm from the template snapshot', {
  timeout: 900_000,
}, async (t) => {
  const first = await Sandbox.create({ timeoutMs: 600_000 });
  t.after(() => first.kill());
  assert.match((await first.commands.run('uname -r')).stdout, /cloud-amd64/, 'its own kernel');
  assert.equal((await first.runCode('x = 20; x + 1')).text, '21');
  assert.equal((await first.runCode('x * 2')).text, '40');
  const failed = await first.runCode('1 / 0');
  assert.equal(failed.error?.name, 'ZeroDivisionError');
  const plot = await first.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()', {
    timeoutMs: 300_000,
  });
  const png = plot.results.find((r) => r.png)?.png;
  assert.ok(png, 'a PNG');
  assert.equal(Buffer.from(png, 'base64').subarray(1, 4).toString(), 'PNG');
  await assert.rejects(
    first.runCode('import time\nwhile True: time.sleep(0.1)', { timeoutMs: 5000 }),
    (e: unknown) => e instanceof TimeoutError,
  );
  assert.equal((await first.runCode('x', { timeoutMs: 60_000 })).text, '20', 'the interrupted kernel kept x');

  const started = performance.now();
  const warm = await Sandbox.create({ envs: { WHO: 'restored' }, timeoutMs: 600_000 });
  t.after(() => warm.kill());
  const created = performance.now();
  assert.equal((await warm.runCode('1 + 1')).text, '2');
  const ran = performance.now();
  const who = await warm.runCode('import os; os.environ.get("WHO")');
  assert.equal(who.text, 'restored', JSON.stringify(who.toJSON()));
  assert.equal((await warm.runCode('x')).error?.name, 'NameError', 'its own kernel state');
  process.stderr.write(
    `# microVM code interpreter: create ${((created - started) / 1000).toFixed(2)} s, first runCode ${((ran - created) / 1000).toFixed(3)} s\n`,
  );
});
