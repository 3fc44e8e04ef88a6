// envd in a root filesystem that lacks what the SDK assumes: no /bin/bash (busybox sh
// runs instead), no /etc/passwd (root still works, other users are a clear error).
// Runs on the host with envd's real native helper; the "missing bash" is a path that
// does not exist, so the host's own /bin/bash is never in the way.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ProcessManager } from '../src/process/manager.js';
import { type ShellFallback, shellCommand } from '../src/process/shell-fallback.js';
import { UnknownUserError, UserDatabase } from '../src/users.js';

const helper = fileURLToPath(new URL('../guest/aiva-exec', import.meta.url));
const busybox = '/bin/busybox';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'envd-no-bash-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('a missing /bin/bash is replaced by busybox sh with the same arguments, nothing else is', async (t) => {
  const dir = await tempDir(t);
  const missing: ShellFallback = { bash: join(dir, 'bash'), busybox };
  assert.deepEqual(await shellCommand(missing.bash, ['-l', '-c', 'echo hi'], missing), {
    cmd: busybox,
    args: ['sh', '-l', '-c', 'echo hi'],
  });
  assert.deepEqual(await shellCommand(missing.bash, ['-i', '-l'], missing), {
    cmd: busybox,
    args: ['sh', '-i', '-l'],
  });
  // Other commands, an existing bash, or no busybox: run as asked.
  assert.deepEqual(await shellCommand('/usr/bin/env', ['true'], missing), {
    cmd: '/usr/bin/env',
    args: ['true'],
  });
  const present = { bash: '/bin/sh', busybox };
  assert.deepEqual(await shellCommand('/bin/sh', ['-c', 'x'], present), {
    cmd: '/bin/sh',
    args: ['-c', 'x'],
  });
  const noBusybox = { bash: missing.bash, busybox: join(dir, 'busybox') };
  assert.deepEqual(await shellCommand(missing.bash, ['-c', 'x'], noBusybox), {
    cmd: missing.bash,
    args: ['-c', 'x'],
  });
  assert.deepEqual(await shellCommand(missing.bash, ['-c', 'x'], undefined), {
    cmd: missing.bash,
    args: ['-c', 'x'],
  });
});

test('a command the SDK sends to bash runs in busybox sh when there is no bash', async (t) => {
  const dir = await tempDir(t);
  const bash = join(dir, 'bash');
  const manager = new ProcessManager(helper, { bash, busybox });
  const users = new UserDatabase(dir); // no passwd: root is implicit
  const config = { cmd: bash, args: ['-l', '-c', 'echo hello; id -u; echo "$0"'], envs: {} };
  const { proc, events } = await manager.start({
    config,
    cwd: '/',
    user: users.lookup('root'),
    sandboxEnv: new Map(),
    stdin: false,
  });
  proc.release();
  let out = '';
  let exitCode: number | undefined;
  for await (const e of events.drain(AbortSignal.timeout(10_000))) {
    if (e.kind === 'data') out += Buffer.from(e.data).toString();
    if (e.kind === 'end') exitCode = e.end.exitCode;
  }
  assert.equal(exitCode, 0);
  assert.equal(out, 'hello\n0\nsh\n');
  assert.deepEqual(proc.config, config, 'the process reports what was asked');
});

test('without /etc/passwd root still exists and any other user is a clear error', async (t) => {
  const dir = await tempDir(t);
  const users = new UserDatabase(dir);
  const root = users.lookup('root');
  assert.equal(root.uid, 0);
  assert.equal(root.gid, 0);
  assert.deepEqual(root.groups, [0]);
  assert.ok(root.home === '/root' || root.home === '/');
  assert.equal(users.userName(0), 'root');
  assert.throws(
    () => users.lookup('user'),
    (e: unknown) =>
      e instanceof UnknownUserError &&
      e.message === `user 'user' does not exist (the sandbox has no ${dir}/passwd)`,
  );

  // A passwd without root (odd, but seen in minimal images) keeps its users and gains root.
  await writeFile(join(dir, 'passwd'), 'user:x:1000:1000::/home/user:/bin/sh\n');
  assert.equal(users.lookup('user').uid, 1000);
  assert.equal(users.lookup('root').uid, 0);
  assert.throws(() => users.lookup('nobody'), { message: "user 'nobody' does not exist" });
});
