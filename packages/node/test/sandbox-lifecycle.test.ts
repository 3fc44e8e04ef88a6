// The sandbox manager with the real runtimes of this host: container (runc) and
// qemu-microvm (TCG here). Create, pause, resume, kill; crashes, restarts, bad input;
// and after everything, nothing left on the host.
import assert from 'node:assert/strict';
import { access, appendFile, cp, mkdtemp, rmdir } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { hybridV2Controllers } from '../src/host/cgroups.js';
import { isSameProcess } from '../src/host/proc.js';
import {
  checkHost,
  dataDir,
  execInSandbox,
  hostResources,
  ImageStore,
  RecipeError,
  runCommand,
  type SandboxInfo,
  SandboxManager,
  SandboxSpecError,
  SandboxStateError,
} from '../src/index.js';
import { QemuRuntime } from '../src/runtime/qemu/qemu-runtime.js';
import { createRuntimes } from '../src/runtime/select.js';
import type { DriverName } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { envdDir, repoImages } from './helpers/repo.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, envdHealth, hostRuntimes, testManager, until } from './helpers/test-node.js';

checkHostLeaks();

const run = (s: SandboxInfo, cmd: string) =>
  execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user: 'root' });

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

for (const driver of ['container', 'qemu-microvm'] as DriverName[]) {
  describe(`${driver} sandboxes`, () => {
    test('run, pause, resume and kill', async (t) => {
      const m = await testManager({ defaultDriver: driver });
      t.after(() => closeManager(m));
      const s = await m.create({ memoryMiB: 256, vcpus: 1 });
      assert.equal(s.state, 'running');
      assert.equal(s.driver, driver);
      assert.match(s.id, /^[a-z0-9]{20}$/);
      const address = s.network?.address ?? '';
      assert.equal(await envdHealth(address), 204);

      const stats = await m.stats(s.id);
      assert.ok(stats.memoryBytes > 0, 'memory is accounted');
      assert.ok(stats.cpuUsageUs > 0, 'CPU time is accounted');
      const limit = driver === 'container' ? 256 : 256 + 256;
      assert.equal(stats.memoryLimitBytes, limit * 1024 * 1024);

      await run(s, '(nohup sleep 3600 >/dev/null 2>&1 &)');
      const sleeper = (await run(s, 'pgrep -x sleep')).stdout;
      const pid = s.runtime?.pid ?? 0;
      const states: string[] = [];
      const listen = (i: SandboxInfo) => states.push(i.state);
      m.on('state', listen);
      // A microVM is saved to disk once paused: suspended.
      const paused = driver === 'qemu-microvm' ? 'suspended' : 'paused';
      assert.equal((await m.pause(s.id)).state, paused);
      assert.deepEqual(states, driver === 'qemu-microvm' ? ['paused', 'suspended'] : ['paused']);
      assert.notEqual(await envdHealth(address, 500), 204, 'a paused sandbox does not answer');
      if (driver === 'qemu-microvm') {
        // Paused to disk: QEMU has ended and holds no memory.
        assert.equal(await isSameProcess(pid, s.runtime?.pidStartTime ?? 0), false, 'QEMU ended');
        assert.equal(m.get(s.id).runtime, undefined);
        await assert.rejects(m.stats(s.id), /is suspended: cannot measure it/);
      } else {
        assert.equal(await envdHealth(address, 500), 'TimeoutError', 'frozen: connections hang');
      }
      await assert.rejects(m.pause(s.id), SandboxStateError);
      assert.equal((await m.resume(s.id)).state, 'running');
      assert.equal(await envdHealth(address, 5000), 204);
      assert.equal((await run(s, 'pgrep -x sleep')).stdout, sleeper, 'its processes ran on');
      assert.equal(
        await exists(join(m.options.home, 'sandboxes', s.id, 'suspended')),
        false,
        'the saved VM is gone once resumed',
      );

      m.off('state', listen);
      states.length = 0;
      m.on('state', listen);
      await m.kill(s.id);
      assert.deepEqual(states, ['stopping', 'stopped']);
      assert.deepEqual(m.list(), []);
      assert.notEqual(await envdHealth(address, 500), 204);
    });

    test('a sandbox whose process dies is marked failed and freed', async (t) => {
      const m = await testManager({ defaultDriver: driver });
      t.after(() => closeManager(m));
      const s = await m.create({ memoryMiB: 256, vcpus: 1 });
      process.kill(s.runtime?.pid ?? 0, 'SIGKILL');
      const failed = await until('the sandbox to fail', async () => {
        const now = m.get(s.id);
        return now.state === 'error' ? now : undefined;
      });
      assert.match(failed.error ?? '', /exited/);
      assert.equal(failed.network, undefined, 'its network is released');
      const left = await hostResources();
      assert.ok(!left.netns.includes(`aiva-${s.id}`));
      assert.ok(!left.cgroups.includes(s.id));
      await m.kill(s.id);
      assert.deepEqual(m.list(), []);
    });

    test('a restarted node adopts live sandboxes and cleans up dead ones', async (t) => {
      const home = await tempDir('aiva-node-');
      const first = await testManager({ defaultDriver: driver, home });
      // Closed whatever happens: an open manager holds the node lock every later test needs.
      const creates = Promise.all([
        first.create({ memoryMiB: 256, vcpus: 1 }),
        first.create({ memoryMiB: 256, vcpus: 1 }),
      ]);
      const [live, dead] = await creates.catch(async (e: unknown) => {
        await closeManager(first);
        throw e;
      });
      await first.close();
      process.kill(dead.runtime?.pid ?? 0, 'SIGKILL');
      await until('the process to exit', async () =>
        (await exists(`/proc/${dead.runtime?.pid}/stat`)) ? undefined : true,
      );

      // Recovery ends the dead one as a kill would: through the same transitions, heard by the same listeners.
      const heard: [string, string][] = [];
      const second = await testManager({
        defaultDriver: driver,
        home,
        onState: (s) => heard.push([s.id, s.state]),
      });
      t.after(() => closeManager(second));
      assert.deepEqual(heard, [
        [dead.id, 'stopping'],
        [dead.id, 'stopped'],
      ]);
      assert.deepEqual(
        second.list().map((s) => [s.id, s.state]),
        [[live.id, 'running']],
      );
      assert.equal(await envdHealth(live.network?.address ?? ''), 204);
      assert.equal(await exists(join(home, 'sandboxes', dead.id)), false, 'the dead one is gone');
      assert.ok(!(await hostResources()).netns.includes(`aiva-${dead.id}`));
      await second.kill(live.id);
    });

    test('a sandbox that never answers is removed with a clear error', async (t) => {
      const m = await testManager({ defaultDriver: driver, readyTimeoutMs: { [driver]: 1 } });
      t.after(() => closeManager(m));
      await assert.rejects(
        m.create({ memoryMiB: 256, vcpus: 1 }),
        /could not start: envd did not answer within 1 ms/,
      );
      assert.deepEqual(m.list(), []);
    });

    test('impossible limits and unknown templates are refused before anything is made', async (t) => {
      const m = await testManager({ defaultDriver: driver });
      t.after(() => closeManager(m));
      const before = await hostResources();
      const cores = availableParallelism();
      await assert.rejects(m.create({ vcpus: 0 }), SandboxSpecError);
      await assert.rejects(
        m.create({ vcpus: cores + 1 }),
        new RegExp(`vcpus must be a whole number from 1 to ${cores}`),
      );
      await assert.rejects(m.create({ memoryMiB: 0 }), /memory must be from 128/);
      await assert.rejects(m.create({ memoryMiB: 10_000_000 }), /memory must be from 128/);
      await assert.rejects(m.create({ diskMiB: 100 }), /disk must be from 4096 MiB/);
      await assert.rejects(m.create({ template: 'no-such-template' }), RecipeError);
      await assert.rejects(m.create({ id: 'Bad-Id' }), /not lower-case letters and digits/);
      assert.deepEqual(m.list(), []);
      assert.deepEqual(await hostResources(), before);
    });
  });
}

describe('images and sandboxes', () => {
  test('a template in use is not removed, and a sandbox outlives the removal of its template', async (t) => {
    // A variant of base with its own guest layer (a changed envd), so that removing it
    // leaves the shared Debian layer and the real base alone.
    const dir = await tempDir();
    await cp(envdDir, join(dir, 'guest'), { recursive: true });
    await appendFile(join(dir, 'guest', 'envd.js'), '\n// variant for a removal test\n');
    const variant = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir: join(dir, 'guest') });
    const m = await testManager({ images: variant });
    t.after(() => closeManager(m));
    const s = await m.create({ memoryMiB: 256, vcpus: 1 });
    await assert.rejects(
      variant.remove(s.template.hash, { inUse: await SandboxManager.imagesInUse(m.options.home) }),
      /in use by sandboxes/,
    );
    await variant.remove(s.template.hash);
    await m.kill(s.id);
    assert.deepEqual(m.list(), []);
  });
});

describe('qemu-microvm failures', () => {
  test('QEMU dying mid-boot fails the create and frees everything', async (t) => {
    const m = await testManager({ defaultDriver: 'qemu-microvm' });
    t.after(() => closeManager(m));
    const creating = m.create({ memoryMiB: 256, vcpus: 1 });
    const pid = await until('QEMU to start', async () => m.list()[0]?.runtime?.pid);
    process.kill(pid, 'SIGKILL');
    await assert.rejects(creating, /stopped before envd answered|exited/);
    assert.deepEqual(m.list(), []);
  });

  test('a missing QEMU binary is a clear error', async (t) => {
    const runtimes = await hostRuntimes();
    runtimes.set(
      'qemu-microvm',
      new QemuRuntime({ accel: 'tcg', binary: '/nonexistent/qemu-system-x86_64' }),
    );
    const m = await testManager({ defaultDriver: 'qemu-microvm', runtimes });
    t.after(() => closeManager(m));
    await assert.rejects(
      m.create({ memoryMiB: 256, vcpus: 1 }),
      /qemu-system-x86_64.*(No such file|exited)/s,
    );
    assert.deepEqual(m.list(), []);
  });

  test('a runtime the host lacks is refused', async (t) => {
    const m = await testManager();
    t.after(() => closeManager(m));
    await assert.rejects(
      m.create({ driver: 'firecracker' }),
      /the firecracker runtime is not available on this host/,
    );
  });
});

describe('crun', () => {
  test('runs container sandboxes too, once the host’s cgroups suit it', async (t) => {
    // On a hybrid host crun needs the cgroup2 hierarchy empty of controllers: move them
    // to a v1 mount for this test (what `aiva doctor` advises), and back afterwards.
    const v2 = await hybridV2Controllers();
    if (v2.length > 0) {
      const dir = await mkdtemp(join(tmpdir(), 'aiva-cgroup-'));
      await runCommand('mount', ['-t', 'cgroup', '-o', v2.join(','), 'none', dir]);
      t.after(async () => {
        await runCommand('umount', [dir]);
        await rmdir(dir);
      });
    }
    const host = await checkHost();
    assert.equal(host.checks.find((c) => c.variant === 'crun')?.available, true);
    const m = await testManager({ runtimes: createRuntimes(host, { oci: 'crun' }) });
    t.after(() => closeManager(m));
    const s = await m.create({ memoryMiB: 256, vcpus: 1 });
    assert.equal(s.runtime?.oci, 'crun');
    const r = await execInSandbox(s.network?.address ?? '', 'cat /proc/1/status | grep -c Seccomp:.2', {
      accessToken: s.accessToken,
    });
    assert.equal(r.stdout, '1\n', 'PID 1 runs under a seccomp filter');
    await m.kill(s.id);
  });
});
