// Hostile workloads on container sandboxes, through the e2b SDK against `aiva up`: for
// each, a neighbour sandbox runs a steady probe (`commands.run('true')`), and the host,
// the neighbour and the server must stay healthy; the offending sandbox keeps working or
// answers with a clear error, and its kill leaves nothing behind (the file's leak check).
//
// The bound: the neighbour's p99 stays under NEIGHBOUR_P99_BOUND_MS (5 s). Idle it is
// ~0.1 s here, under most workloads ~0.1–0.3 s, under a fork bomb up to ~1.9 s on this
// 2-core host (the bomb's forks and exits cost the kernel outside the CPU quota). The
// figures (p50, p99, host memory and disk at their lowest) are printed as diagnostics.
import assert from 'node:assert/strict';
import { freemem } from 'node:os';
import { after, before, describe, test } from 'node:test';
import { CommandExitError, Sandbox } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';
import { type ProbeResult, probeNeighbour } from './helpers/neighbour-probe.js';

const NEIGHBOUR_P99_BOUND_MS = 5000;
const GiB = 1024 ** 3;
const server = aivaUpForFile(['--runtime', 'container']);

/** Runs `cmd`, resolving to its result whether it exits 0 or not. */
async function sh(sbx: Sandbox, cmd: string, opts: { user?: 'root' | 'user'; timeoutMs?: number } = {}) {
  try {
    return await sbx.commands.run(cmd, { user: opts.user, timeoutMs: opts.timeoutMs ?? 120_000 });
  } catch (e) {
    if (e instanceof CommandExitError) return e;
    throw e;
  }
}

describe('hostile workloads in a container sandbox', { timeout: 30 * 60_000 }, () => {
  let neighbour: Sandbox;
  let idle: ProbeResult;
  const figures: Record<string, ProbeResult> = {};

  before(async () => {
    neighbour = await Sandbox.create({ timeoutMs: 3600_000 });
    const p = probeNeighbour(neighbour, server.up.home);
    await new Promise((r) => setTimeout(r, 5000));
    idle = await p.stop();
    figures.idle = idle;
  });
  after(async () => {
    await neighbour?.kill();
    const rows = Object.entries(figures).map(
      ([k, f]) =>
        `${k.padEnd(22)} p50 ${String(f.p50).padStart(5)} ms  p99 ${String(f.p99).padStart(5)} ms  n ${f.n}  host memory free ≥ ${(f.hostMemoryFreeMin / GiB).toFixed(1)} GiB  disk free ≥ ${(f.hostDiskFreeMin / GiB).toFixed(1)} GiB`,
    );
    console.log(`# neighbour under each workload\n${rows.map((r) => `# ${r}`).join('\n')}`);
  });

  /**
   * Makes an offender, starts the probe, runs `work`, stops the probe, checks the
   * neighbour and the server, and kills the offender (which must succeed).
   */
  async function underLoad(name: string, work: (offender: Sandbox) => Promise<void>): Promise<ProbeResult> {
    const offender = await Sandbox.create({ timeoutMs: 600_000 });
    const diskBefore = idle.hostDiskFreeMin;
    const probe = probeNeighbour(neighbour, server.up.home);
    try {
      await work(offender);
    } finally {
      const r = await probe.stop();
      figures[name] = r;
      await offender.kill();
      assert.deepEqual(r.errors, [], 'the neighbour’s commands all worked');
      assert.ok(
        r.p99 < NEIGHBOUR_P99_BOUND_MS,
        `the neighbour’s p99 was ${r.p99} ms (bound ${NEIGHBOUR_P99_BOUND_MS})`,
      );
      // The offender's disk is 4 GiB at most; the host keeps the rest.
      assert.ok(
        diskBefore - r.hostDiskFreeMin < 5 * GiB,
        `the host's disk lost ${diskBefore - r.hostDiskFreeMin} bytes`,
      );
      assert.ok(r.hostMemoryFreeMin > 2 * GiB, 'the host kept memory');
      assert.equal((await fetch(`${server.up.url}/health`)).status, 200, 'the server answers');
      assert.equal((await neighbour.commands.run('echo ok')).stdout, 'ok\n');
    }
    return figures[name] as ProbeResult;
  }

  test('a fork bomb: capped at the process limit, envd keeps answering, kill works', async () => {
    await underLoad('fork bomb', async (o) => {
      await o.commands.run("setsid bash -c 'b() { b | b & }; b' >/dev/null 2>&1 &");
      await new Promise((r) => setTimeout(r, 10_000));
      // envd is outside the user's cgroup: its own calls are answered at once. (A new
      // command competes with thousands of bomb processes for the user's CPU: it starts,
      // but slowly.)
      const root = await o.files.list('/', { requestTimeoutMs: 10_000 });
      assert.ok(root.some((e) => e.name === 'home'));
    });
  });

  test('10 000 processes: stopped by the sandbox’s limits, the sandbox keeps working', async () => {
    await underLoad('10 000 processes', async (o) => {
      // Each sleep takes some memory, so the memory limit may stop them (the spawner, the
      // biggest process, is killed) before the process limit does (EAGAIN).
      const spawn = [
        'import os',
        'for i in range(10000):',
        '    try:',
        '        os.posix_spawn("/bin/sleep", ["sleep", "60"], os.environ)',
        '    except OSError as e:',
        '        print(i, e.strerror, flush=True); break',
        '    if i % 100 == 0: print(i, flush=True)',
      ].join('\n');
      const r = await sh(o, `python3 -c '${spawn}'`, { timeoutMs: 180_000 });
      const last = r.stdout.trim().split('\n').at(-1) ?? '';
      const started = Number(last.split(' ')[0]);
      assert.ok(started > 500 && started < 10_000, `stopped at ${last} (${r.error ?? ''})`);
      assert.ok(/Resource temporarily unavailable/.test(last) || /signal: killed/.test(r.error ?? ''), last);
      assert.equal((await o.commands.run('echo alive', { timeoutMs: 60_000 })).stdout, 'alive\n');
    });
  });

  test('a memory bomb: its biggest process dies, the sandbox keeps working', async () => {
    await underLoad('memory bomb', async (o) => {
      const hog = 'a = []\nwhile True: a.append(bytearray(16 * 1024 * 1024))';
      const r = await sh(o, `python3 -c '${hog}'`);
      assert.ok(r instanceof CommandExitError, 'the hog failed');
      assert.match(r.error ?? '', /signal: killed/);
      assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
    });
  });

  test('writing past the disk, to / and to /tmp: ENOSPC inside, the host keeps its disk', async () => {
    await underLoad('disk full', async (o) => {
      const avail = Number((await o.commands.run('df -B1M --output=avail / | tail -n 1')).stdout.trim());
      await o.commands.run(`fallocate -l ${avail - 64}M /home/user/most`);
      for (const dir of ['/home/user', '/tmp']) {
        const r = await sh(o, `dd if=/dev/zero of=${dir}/fill bs=1M status=none`);
        assert.match(r.stderr, /No space left on device/);
      }
      assert.equal((await o.commands.run('rm /home/user/most && echo freed')).stdout, 'freed\n');
    });
  });

  test('inode exhaustion: ENOSPC inside, the sandbox keeps working', async () => {
    await underLoad('inodes', async (o) => {
      const fill = [
        'import errno, os',
        'os.makedirs("/tmp/i", exist_ok=True)',
        'n = 0',
        'try:',
        '    while True:',
        '        open(f"/tmp/i/{n}", "w").close(); n += 1',
        'except OSError as e:',
        '    print(n, errno.errorcode[e.errno])',
      ].join('\n');
      const r = await sh(o, `python3 -c '${fill}'`, { timeoutMs: 600_000 });
      assert.match(r.stdout, /^\d+ ENOSPC\n$/);
      assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
    });
  });

  test('a CPU spin on every core', async () => {
    await underLoad('cpu spin', async (o) => {
      await o.commands.run("for i in $(seq $(nproc)); do timeout 15 sh -c 'while :; do :; done' & done");
      await new Promise((r) => setTimeout(r, 12_000));
    });
  });

  test('100 MiB/s of stdout', async () => {
    await underLoad('stdout flood', async (o) => {
      let bytes = 0;
      const t = performance.now();
      const h = await o.commands.run(
        'timeout 10 sh -c \'yes $(head -c 4000 /dev/zero | tr "\\\\0" x)\'; true',
        {
          onStdout: (d) => {
            bytes += d.length;
          },
          timeoutMs: 60_000,
        },
      );
      console.log(
        `# stdout flood: ${Math.round(bytes / 2 ** 20 / ((performance.now() - t) / 1000))} MiB/s reached the client`,
      );
      assert.equal(h.exitCode, 0);
      assert.ok(bytes > 0);
      assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
    });
  });

  test('1 000 listening ports', async () => {
    await underLoad('1000 ports', async (o) => {
      const listen = [
        'import socket, time',
        'socks = []',
        'for p in range(20000, 21000):',
        '    s = socket.socket(); s.bind(("0.0.0.0", p)); s.listen(); socks.append(s)',
        'print(len(socks), flush=True)',
        'time.sleep(15)',
      ].join('\n');
      const h = await o.commands.run(`python3 -c '${listen}'`, { background: true });
      await new Promise((r) => setTimeout(r, 10_000));
      const count = (await o.commands.run('ss -ltn | grep -c LISTEN')).stdout.trim();
      assert.ok(Number(count) >= 1000, `${count} listening`);
      await h.kill();
    });
  });

  test('a process that ignores SIGTERM does not stop the kill', async () => {
    await underLoad('ignores SIGTERM', async (o) => {
      await o.commands.run('setsid bash -c \'trap "" TERM; sleep 3600\' >/dev/null 2>&1 &');
    });
  });

  test('free memory on the host is what it was', () => {
    assert.ok(freemem() > 2 * GiB);
  });
});
