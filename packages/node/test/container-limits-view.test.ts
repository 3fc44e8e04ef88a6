// What a container sandbox sees of its own limits: its CPUs (pinned to `vcpus` host CPUs:
// nproc, sched_getaffinity) and its memory and CPUs in /proc through the node's LXCFS
// daemon (free, /proc/meminfo, /proc/cpuinfo, Node's os.cpus() and os.totalmem()); the
// daemon's start, health check and restart after it died; and a container that starts
// without lxcfs.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CpuPlacement, formatCpuList, leastUsedCpus, parseCpuList } from '../src/host/cpu-placement.js';
import { Lxcfs, lxcfsStatus } from '../src/host/lxcfs.js';
import { mountedUnder } from '../src/host/mounts.js';
import { isSameProcess, processStartTime } from '../src/host/proc.js';
import { execInSandbox, type SandboxInfo, type SandboxManager } from '../src/index.js';
import { ContainerRuntime } from '../src/runtime/container/container-runtime.js';
import type { DriverName, SandboxRuntime } from '../src/runtime/types.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, hostRuntimes, testManager } from './helpers/test-node.js';

checkHostLeaks();
const home = await tempDir('aiva-node-');
const scratch = await tempDir('lxcfs-test-');

const MiB = 1024 * 1024;
const run = async (s: SandboxInfo, cmd: string) => {
  const r = await execInSandbox(s.network?.address ?? '', cmd, { accessToken: s.accessToken, user: 'root' });
  assert.equal(r.exitCode, 0, `${cmd}: ${r.stderr}`);
  return r.stdout.trim();
};
/** The guest layer's Node, as envd runs it (through the layer's loader when it has one). */
const guestNode = (script: string) =>
  `rt=/usr/local/lib/aiva/runtime; if [ -e $rt/ld.so ]; then n="$rt/ld.so --library-path $rt/lib $rt/node"; else n=$rt/node; fi; $n -e '${script}'`;
const hostMemTotalKb = async () =>
  Number(/^MemTotal:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1]);

describe('CPU placement', () => {
  test('CPU lists are read and written as the kernel does', () => {
    assert.deepEqual(parseCpuList('0-2,5,7-8\n'), [0, 1, 2, 5, 7, 8]);
    assert.deepEqual(parseCpuList(''), []);
    assert.equal(formatCpuList([8, 0, 1, 2, 5, 7]), '0-2,5,7-8');
    assert.equal(formatCpuList([3]), '3');
    assert.equal(formatCpuList([]), '');
  });

  test('a sandbox gets the CPUs the fewest others are on, and gives them back', async () => {
    const p = new CpuPlacement(async () => [0, 1, 2, 3]);
    assert.deepEqual(await p.place('a', 1), [0]);
    assert.deepEqual(await p.place('b', 2), [1, 2]);
    assert.deepEqual(await p.place('c', 2), [0, 3], 'CPU 3 is free, then the lowest of the others');
    assert.deepEqual(await p.place('d', 8), [0, 1, 2, 3], 'no more than the host has');
    p.release('d');
    p.release('a');
    assert.deepEqual(Object.fromEntries(p.load()), { 0: 1, 1: 1, 2: 1, 3: 1 });
    assert.deepEqual(leastUsedCpus([0, 1, 2, 3], p.load(), 1), [0]);
    await p.recover(new Set(['b']));
    assert.deepEqual(
      Object.fromEntries(p.load()),
      { 1: 1, 2: 1 },
      'recovery forgets what the node did not keep',
    );
  });
});

describe('an lxcfs daemon of its own', () => {
  const lxcfs = new Lxcfs({
    dir: join(scratch, 'mnt'),
    pidFile: join(scratch, 'lxcfs.pid'),
    log: join(scratch, 'lxcfs.log'),
  });
  after(() => lxcfs.stop());

  test('is started once, found again by its pid file, and serves the /proc files', async () => {
    const first = await lxcfs.ensure();
    assert.equal(first.ok, true, first.detail);
    assert.equal((await lxcfs.ensure()).pid, first.pid, 'a running daemon is kept');
    assert.equal(
      (await new Lxcfs(lxcfs.options).ensure()).pid,
      first.pid,
      'a node that starts again finds it',
    );
    const mounts = await lxcfs.containerMounts();
    const destinations = mounts.map((m) => m.destination);
    for (const f of ['cpuinfo', 'meminfo', 'stat', 'uptime', 'loadavg', 'swaps', 'diskstats'])
      assert.ok(destinations.includes(`/proc/${f}`), `${f} is served: ${destinations.join(' ')}`);
    assert.ok(destinations.includes('/sys/devices/system/cpu/online'));
    for (const m of mounts) await readFile(m.source, 'utf8');
  });

  test('a daemon that died is noticed (ENOTCONN) and replaced', async () => {
    const { pid } = await lxcfs.ensure();
    assert.ok(pid);
    const startTime = await processStartTime(pid);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && startTime && (await isSameProcess(pid, startTime)); i++)
      await new Promise((r) => setTimeout(r, 20));
    const meminfo = join(lxcfs.options.dir, 'proc', 'meminfo');
    await assert.rejects(readFile(meminfo), { code: 'ENOTCONN' }, 'its mount is dead');
    const dead = await lxcfs.health();
    assert.equal(dead.ok, false);
    assert.match(dead.detail, /no lxcfs runs/);
    const again = await lxcfs.ensure();
    assert.equal(again.ok, true, again.detail);
    assert.notEqual(again.pid, pid);
    assert.match(await readFile(meminfo, 'utf8'), /^MemTotal:/);
  });

  test('a daemon that is slow to answer is left alone', async () => {
    const { pid } = await lxcfs.ensure();
    assert.ok(pid);
    process.kill(pid, 'SIGSTOP');
    try {
      const slow = await lxcfs.health();
      assert.equal(slow.slow, true, slow.detail);
      await assert.rejects(lxcfs.ensure(), /not restarted/);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    assert.equal((await lxcfs.ensure()).pid, pid);
  });

  test('stops and leaves no mount', async () => {
    await lxcfs.stop();
    assert.deepEqual(await mountedUnder(lxcfs.options.dir), []);
    assert.equal((await lxcfs.health()).ok, false);
  });

  test('the doctor says what is missing and what to install', async () => {
    const status = await lxcfsStatus(new Lxcfs({ ...lxcfs.options, binary: '/nonexistent/lxcfs' }));
    assert.equal(status.ok, false);
    assert.equal(status.fix, 'apt-get install lxcfs');
    assert.match(
      (await lxcfsStatus(lxcfs)).detail,
      /^\/proc shows each sandbox its own CPUs and memory: lxcfs 5\./,
    );
  });
});

describe('container sandboxes see their own limits', () => {
  let m: SandboxManager;
  let one: SandboxInfo;
  let two: SandboxInfo;

  before(async () => {
    m = await testManager({ defaultDriver: 'container', home });
    one = await m.create({ memoryMiB: 512, vcpus: 1 });
    two = await m.create({ memoryMiB: 512, vcpus: 2 });
  });
  after(() => closeManager(m));

  test('1 vCPU and 512 MiB: nproc, free, /proc/meminfo, /proc/cpuinfo and Node agree', async () => {
    assert.equal(await run(one, 'nproc'), '1');
    assert.equal(await run(one, "free -m | awk '/^Mem:/ { print $2 }'"), '512');
    assert.equal(await run(one, "awk '/^SwapTotal:/ { print $2 }' /proc/meminfo"), '0');
    assert.equal(await run(one, 'grep MemTotal /proc/meminfo'), `MemTotal:         ${512 * 1024} kB`);
    assert.equal(await run(one, 'grep -c ^processor /proc/cpuinfo'), '1');
    assert.equal(await run(one, 'grep -c "^cpu[0-9]" /proc/stat'), '1');
    assert.equal(await run(one, 'cat /sys/devices/system/cpu/online'), '0');
    assert.equal(await run(one, `python3 -c 'import os; print(os.cpu_count())'`), '1');
    assert.equal(
      await run(
        one,
        guestNode(
          'const os = require("os"); console.log(os.cpus().length, os.availableParallelism(), os.totalmem())',
        ),
      ),
      `1 1 ${512 * MiB}`,
    );
  });

  test('2 vCPUs: two CPUs everywhere', async () => {
    assert.equal(await run(two, 'nproc'), '2');
    assert.equal(await run(two, 'grep -c ^processor /proc/cpuinfo'), '2');
    assert.equal(await run(two, 'grep -c "^cpu[0-9]" /proc/stat'), '2');
    assert.equal(await run(two, 'cat /sys/devices/system/cpu/online'), '0-1');
    assert.equal(
      await run(
        two,
        guestNode('const os = require("os"); console.log(os.cpus().length, os.availableParallelism())'),
      ),
      '2 2',
    );
  });

  test('a node that starts again counts the CPUs its live containers are pinned to', async () => {
    const runtime = (await hostRuntimes()).get('container') as ContainerRuntime;
    const placement = runtime.options.cpuPlacement;
    assert.ok(placement);
    await placement.recover(new Set([one.id, two.id]));
    assert.equal(placement.cpusOf(one.id)?.length, 1);
    assert.equal(placement.cpusOf(two.id)?.length, 2);
    assert.equal(
      await run(one, "awk '/^Cpus_allowed_list/ { print $2 }' /proc/self/status"),
      formatCpuList(placement.cpusOf(one.id) ?? []),
    );
  });
});

describe('a container sandbox without lxcfs', () => {
  let m: SandboxManager;
  let s: SandboxInfo;
  const missing = new Lxcfs({
    dir: join(scratch, 'none'),
    pidFile: join(scratch, 'none.pid'),
    log: join(scratch, 'none.log'),
    binary: '/nonexistent/lxcfs',
  });

  before(async () => {
    const host = (await hostRuntimes()).get('container') as ContainerRuntime;
    const runtimes = new Map<DriverName, SandboxRuntime>([
      ['container', new ContainerRuntime({ ...host.options, lxcfs: missing })],
    ]);
    m = await testManager({ defaultDriver: 'container', home, runtimes });
    s = await m.create({ memoryMiB: 512, vcpus: 1 });
  });
  after(() => closeManager(m));

  test('starts, sees the host’s memory, and still has one CPU', async () => {
    assert.match(missing.lastError ?? '', /could not be started/);
    assert.equal(
      await run(s, "awk '/^MemTotal:/ { print $2 }' /proc/meminfo"),
      String(await hostMemTotalKb()),
    );
    assert.equal(await run(s, 'nproc'), '1');
  });
});
