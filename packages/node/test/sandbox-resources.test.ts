// A sandbox's resources are its own: its disk (/ and /tmp) ends in ENOSPC inside the
// sandbox and takes at most its size from the host; memory-backed mounts are bounded;
// its agent (init, envd) is the last thing the out-of-memory killer takes; the cgroup
// enforces memory without swap, CPU and processes.
import assert from 'node:assert/strict';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Cgroup } from '../src/host/cgroups.js';
import { canLowerOomScores } from '../src/host/proc.js';
import { execInSandbox, type SandboxInfo, type SandboxManager } from '../src/index.js';
import { containerCgroupPath, MAX_PIDS } from '../src/runtime/container/oci-config.js';
import { AGENT_MEMORY_MIB, UserCgroup, userPids } from '../src/runtime/container/user-cgroup.js';
import type { DriverName } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, envdHealth, testManager } from './helpers/test-node.js';

checkHostLeaks();
const home = await tempDir('aiva-node-');
const MiB = 1024 * 1024;

for (const driver of ['container', 'qemu-microvm'] as DriverName[]) {
  describe(`the resources of ${driver} sandboxes`, () => {
    let m: SandboxManager;
    let s: SandboxInfo;
    const run = (cmd: string, user?: string) =>
      execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user });
    const healthy = async () => {
      assert.equal(await envdHealth(s.network?.address ?? ''), 204, 'envd answers');
      assert.equal((await run('echo still here')).stdout, 'still here\n');
    };

    before(async () => {
      m = await testManager({ defaultDriver: driver, home });
      s = await m.create({ memoryMiB: 256, vcpus: 1 });
    });
    after(() => closeManager(m));

    test('the disk is the sandbox’s size, and / and /tmp on it end in ENOSPC inside', async () => {
      const size = s.resources.diskMiB;
      const df = (await run('df -B1M --output=size,avail / | tail -n 1')).stdout
        .trim()
        .split(/\s+/)
        .map(Number);
      const [total = 0, avail = 0] = df;
      // ext4's own metadata takes a little of the size.
      assert.ok(total <= size && total > size * 0.9, `df / says ${total} MiB on a ${size} MiB disk`);
      assert.equal(
        (await run('stat -f -c %T /tmp')).stdout.trim() === 'tmpfs',
        false,
        '/tmp is not in memory',
      );
      // Most of it allocated at once (no data written on the host), the rest by writing.
      const alloc = await run(`fallocate -l ${Math.max(0, avail - 64)}M /home/user/most`);
      assert.equal(alloc.exitCode, 0, alloc.stderr);
      for (const dir of ['/home/user', '/tmp']) {
        const fill = await run(`dd if=/dev/zero of=${dir}/fill bs=1M status=none`);
        assert.notEqual(fill.exitCode, 0, `writing to ${dir} past the disk fails`);
        assert.match(fill.stderr, /No space left on device/);
      }
      await healthy();
      if (driver === 'container') {
        // The host gave the sandbox at most its disk's size.
        const image = await stat(join(home, 'sandboxes', s.id, 'disk.ext4'));
        assert.ok(
          image.blocks * 512 <= size * MiB,
          `the disk image takes ${image.blocks * 512} bytes on the host`,
        );
      }
      assert.equal((await run('rm -f /home/user/most /home/user/fill /tmp/fill && echo ok')).stdout, 'ok\n');
      assert.equal((await run('echo fits > /tmp/after && cat /tmp/after')).stdout, 'fits\n');
    });

    test('a gigabyte written to /tmp takes disk, not the sandbox’s 256 MiB of memory', async () => {
      const r = await run('dd if=/dev/zero of=/tmp/big bs=4M count=256 status=none && du -m /tmp/big');
      assert.equal(r.exitCode, 0, r.stderr);
      assert.match(r.stdout, /^102[0-9]\s/);
      await healthy();
      await run('rm -f /tmp/big');
    });

    test('memory-backed mounts are bounded', async () => {
      for (const dir of driver === 'container' ? ['/dev/shm', '/run'] : ['/run']) {
        const r = await run(`sudo -n dd if=/dev/zero of=${dir}/fill bs=1M count=1024 status=none`);
        assert.notEqual(r.exitCode, 0, `${dir} took 1 GiB`);
        assert.match(r.stderr, /No space left on device/);
        await run(`sudo -n rm -f ${dir}/fill`);
      }
      await healthy();
    });

    test('the out-of-memory killer takes the user’s processes, never envd or init', async () => {
      const adj = (await run('cat /proc/1/oom_score_adj /proc/$PPID/oom_score_adj /proc/self/oom_score_adj'))
        .stdout;
      const [init, , self] = adj.trim().split('\n');
      // -1000 needs CAP_SYS_RESOURCE, which a container's runtime may lack on this host.
      const agent = driver === 'container' && !(await canLowerOomScores()) ? '0' : '-1000';
      assert.equal(init, agent, 'init');
      assert.equal(self, '500', 'a command');
      const envdPid = (await run("pgrep -o -f '^/usr/local/lib/aiva/runtime/'")).stdout.trim();
      assert.equal((await run(`cat /proc/${envdPid}/oom_score_adj`)).stdout.trim(), agent, 'envd');
      // Memory that no process owns (in a tmpfs) and a process that grows: the process dies.
      assert.equal((await run('dd if=/dev/zero of=/dev/shm/held bs=1M count=60 status=none')).exitCode, 0);
      const hog = 'a = []\nwhile True: a.append(bytearray(16 * 1024 * 1024))';
      const r = await run(`python3 -c '${hog}'`);
      assert.match(r.status, /signal: killed|exit status 137/);
      await healthy();
      await run('rm -f /dev/shm/held');
      assert.equal(m.get(s.id).state, 'running');
    });

    if (driver === 'container') {
      test('the cgroup enforces memory without swap, CPU and processes', async () => {
        const sandbox = await (await Cgroup.at(containerCgroupPath(s.id))).limits();
        if (!(await UserCgroup.supported())) {
          assert.deepEqual(sandbox, { memoryBytes: 256 * MiB, swapBytes: 0, cpus: 1, pids: MAX_PIDS });
          return;
        }
        // The sandbox has what was asked; the user's processes all of it but the agent's part.
        assert.deepEqual(sandbox, { memoryBytes: 256 * MiB, swapBytes: 0, cpus: 1, pids: MAX_PIDS });
        const user = await (await Cgroup.at(`${containerCgroupPath(s.id)}/user`)).limits();
        assert.deepEqual(user, {
          memoryBytes: (256 - AGENT_MEMORY_MIB) * MiB,
          swapBytes: 0,
          cpus: 1,
          pids: 256, // one per MiB, at least 256
        });
        assert.deepEqual(
          [256, 512, 1024, 4096].map((mib) => userPids(mib, MAX_PIDS)),
          [256, 512, 1024, MAX_PIDS - 64],
        );
        // A command is in the user's cgroup (memory, cpu, pids), envd is not.
        const cgroups = (await run('cat /proc/self/cgroup; echo; cat /proc/1/cgroup')).stdout;
        const [cmd = '', init = ''] = cgroups.split('\n\n');
        assert.match(cmd, /:memory:\/user$/m);
        assert.match(cmd, /:pids:\/user$/m);
        assert.doesNotMatch(init, /\/user$/m);
      });
    }
  });
}
