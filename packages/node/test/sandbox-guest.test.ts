// Inside sandboxes of both drivers: commands and files through envd, the access token,
// the memory limit, and what a sandbox must not see (the host's processes, another
// sandbox's files).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ENVD_PORT } from '@aiva/protocol';
import { ConnectError } from '@connectrpc/connect';
import { execInSandbox, type SandboxInfo, type SandboxManager } from '../src/index.js';
import type { DriverName } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, envdHealth, testManager } from './helpers/test-node.js';

checkHostLeaks();
const home = await tempDir('aiva-node-');

for (const driver of ['container', 'qemu-microvm'] as DriverName[]) {
  describe(`inside ${driver} sandboxes`, () => {
    let m: SandboxManager;
    let a: SandboxInfo;
    let b: SandboxInfo;
    const run = (s: SandboxInfo, cmd: string, user?: string) =>
      execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });

    before(async () => {
      m = await testManager({ defaultDriver: driver, home });
      [a, b] = await Promise.all([
        m.create({ memoryMiB: 256, vcpus: 1 }),
        m.create({ memoryMiB: 256, vcpus: 1 }),
      ]);
    });
    after(() => closeManager(m));

    test('a command runs through envd as the template user, with its output and exit code', async () => {
      const r = await run(a, 'echo "$USER in $PWD"; echo oops >&2; exit 7');
      assert.deepEqual(r, {
        exitCode: 7,
        status: 'exit status 7',
        stdout: 'user in /home/user\n',
        stderr: 'oops\n',
      });
      assert.equal((await run(a, 'id -u', 'root')).stdout, '0\n');
      assert.equal((await run(a, 'sudo -n id -u')).stdout, '0\n', 'the user has passwordless sudo');
    });

    test('a file written through envd is read back, owned by the user', async () => {
      const base = `http://${a.network?.address}:${ENVD_PORT}/files?path=/home/user/notes.txt&username=user`;
      const headers = { 'x-access-token': a.accessToken };
      const up = await fetch(base, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/octet-stream' },
        body: 'written from the host\n',
      });
      assert.equal(up.status, 200, await up.text());
      const down = await fetch(base, { headers });
      assert.equal(await down.text(), 'written from the host\n');
      assert.equal((await run(a, 'stat -c %U:%s /home/user/notes.txt')).stdout, 'user:22\n');
    });

    test('envd refuses calls without the sandbox access token', async () => {
      await assert.rejects(execInSandbox(a.network?.address ?? '', 'true'), (e: unknown) => {
        assert.ok(e instanceof ConnectError);
        assert.match(e.message, /unauthenticated|unauthorized/i);
        return true;
      });
      await assert.rejects(
        execInSandbox(a.network?.address ?? '', 'true', { accessToken: b.accessToken }),
        ConnectError,
        'another sandbox’s token does not work',
      );
    });

    test('a sandbox sees neither the host’s processes nor another sandbox’s files', async () => {
      const ps = (await run(a, 'ps -e -o args=', 'root')).stdout;
      for (const host of ['--test', 'qemu-system', 'runc', 'process_api', 'run-tests']) {
        assert.ok(!ps.includes(host), `a host process (${host}) is visible:\n${ps}`);
      }
      assert.match(
        (await run(a, 'cat /proc/1/cmdline | tr "\\0" " "', 'root')).stdout,
        /^\/usr\/local\/lib\/aiva\/(tini|busybox sh) /,
      );
      await run(a, 'echo only-in-a > /home/user/secret');
      assert.equal((await run(a, 'cat /home/user/secret')).stdout, 'only-in-a\n');
      const inB = await run(b, 'cat /home/user/secret');
      assert.equal(inB.exitCode, 1);
      assert.match(inB.stderr, /No such file/);
    });

    test('running out of memory kills the process that used it, not the sandbox', async () => {
      // Chunks that each fit, so that the memory is really used and the OOM killer acts.
      const hog = 'a = []\nwhile True: a.append(bytearray(16 * 1024 * 1024))';
      const r = await run(a, `python3 -c '${hog}'`);
      assert.notEqual(r.exitCode, 0);
      assert.equal(r.stdout, '');
      assert.match(r.status, /signal: killed|exit status 137/);
      assert.equal(await envdHealth(a.network?.address ?? ''), 204, 'envd survives');
      assert.equal(m.get(a.id).state, 'running');
      assert.equal((await run(a, 'echo still here')).stdout, 'still here\n');
    });
  });
}
