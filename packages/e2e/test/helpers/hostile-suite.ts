import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { TestInternet } from '@aiva/node/testkit';
import { CommandExitError, Sandbox } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './aiva-up.js';
import { checkHostLeaks } from './host-leaks.js';
import { type ProbeResult, probeNeighbour } from './neighbour-probe.js';

const NEIGHBOUR_P99_BOUND_MS = 5000;
const GiB = 1024 ** 3;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One DNS query to the sandbox's resolver from inside it: the reply's rcode, or `timeout`. */
const ONE_QUERY = [
  'import random, socket, struct',
  'ns = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]',
  's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)',
  'q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0) + b"\\x01x\\x07invalid\\x00\\x00\\x01\\x00\\x01"',
  's.sendto(q, (ns, 53))',
  'try: print("rcode", s.recv(512)[3] & 15)',
  'except socket.timeout: print("timeout")',
].join('\n');

/** Runs `cmd`, resolving to its result whether it exits 0 or not. */
async function sh(sbx: Sandbox, cmd: string, opts: { user?: 'root' | 'user'; timeoutMs?: number } = {}) {
  try {
    return await sbx.commands.run(cmd, { user: opts.user, timeoutMs: opts.timeoutMs ?? 120_000 });
  } catch (e) {
    if (e instanceof CommandExitError) return e;
    throw e;
  }
}

/**
 * For a suite's file: `aiva up --runtime <driver>` whose sandboxes resolve through a test
 * internet's DNS (an answer in milliseconds, and nothing leaves the host), the SDK
 * pointed at it; after the tests both stop and the host is checked for leftovers.
 */
export function hostileServer(driver: string): { readonly up: AivaUp } {
  let up: AivaUp | undefined;
  let inet: TestInternet | undefined;
  before(async () => {
    inet = await TestInternet.start({});
    up = await aivaUp(['--runtime', driver, '--dns', inet.dnsUpstream]);
    useServer(up);
  });
  after(async () => {
    const code = await up?.stop();
    await inet?.stop();
    if (!up) return;
    await removeHome(up.home);
    assert.equal(code, 0, up.output());
  });
  // Registered after the hooks above: `after` hooks run in the order they were added.
  checkHostLeaks();
  return {
    get up() {
      if (!up) throw new Error('aiva up has not started (use .up inside tests)');
      return up;
    },
  };
}

/** The workloads, by the names a suite may pick. */
export type Workload =
  | 'fork bomb'
  | '10 000 processes'
  | 'memory bomb'
  | 'disk full'
  | 'inodes'
  | 'cpu spin'
  | 'stdout flood'
  | '1000 ports'
  | 'ignores SIGTERM'
  | 'kill -9 envd'
  | 'kill -9 1'
  | 'dns flood'
  | 'proxy flood';

/**
 * Registers the hostile-workload tests against `server` (an `aiva up` of `driver`),
 * each workload in `only` (all by default): for each, an offender sandbox runs it while a
 * neighbour runs a steady probe; the host, the neighbour and the server must stay
 * healthy, and the offender's kill must work.
 */
export function hostileSuite(driver: string, server: { readonly up: AivaUp }, only?: Workload[]): void {
  const workload = (w: Workload, title: string, fn: () => Promise<void>) => {
    if (!only || only.includes(w)) test(title, fn);
  };
  describe(`hostile workloads in a ${driver} sandbox`, { timeout: 30 * 60_000 }, () => {
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
    async function underLoad(
      name: string,
      work: (offender: Sandbox) => Promise<void>,
      bound = NEIGHBOUR_P99_BOUND_MS,
    ): Promise<ProbeResult> {
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
        assert.ok(r.p99 < bound, `the neighbour’s p99 was ${r.p99} ms (bound ${bound})`);
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

    workload(
      'fork bomb',
      'a fork bomb: capped at the process limit, envd keeps answering, kill works',
      async () => {
        await underLoad('fork bomb', async (o) => {
          await o.commands.run("setsid bash -c 'b() { b | b & }; b' >/dev/null 2>&1 &");
          await new Promise((r) => setTimeout(r, 10_000));
          // envd is outside the user's cgroup: its own calls are answered at once. (A new
          // command competes with thousands of bomb processes for the user's CPU: it starts,
          // but slowly.)
          const root = await o.files.list('/', { requestTimeoutMs: 10_000 });
          assert.ok(root.some((e) => e.name === 'home'));
        });
      },
    );

    workload(
      '10 000 processes',
      '10 000 processes: stopped by the sandbox’s limits, the sandbox keeps working',
      async () => {
        await underLoad('10 000 processes', async (o) => {
          // Each sleep takes some memory, so the memory limit may stop them (the spawner, the
          // biggest process, is killed) before the process limit does (EAGAIN).
          const spawn = [
            'import os',
            'for i in range(10000):',
            '    try:',
            '        os.posix_spawn("/bin/sleep", ["sleep", "20"], os.environ)',
            '    except OSError as e:',
            '        print(i, e.strerror, flush=True); break',
            '    if i % 100 == 0: print(i, flush=True)',
          ].join('\n');
          const r = await sh(o, `python3 -c '${spawn}'`, { timeoutMs: 180_000 });
          const last = r.stdout.trim().split('\n').at(-1) ?? '';
          const started = Number(last.split(' ')[0]);
          assert.ok(started > 500 && started < 10_000, `stopped at ${last} (${r.error ?? ''})`);
          assert.ok(
            /Resource temporarily unavailable/.test(last) || /signal: killed/.test(r.error ?? ''),
            last,
          );
          // While the user's processes are at their limit a command may not start (as in a
          // VM at its limit, with the reason); envd answers, and once they end, commands run.
          const full = await sh(o, 'echo alive', { timeoutMs: 60_000 });
          if (full.exitCode !== 0)
            assert.match(
              full.stderr,
              /processes are at their limit|fork: .*Resource temporarily unavailable/,
            );
          assert.ok((await o.files.list('/')).some((e) => e.name === 'home'));
          for (let i = 0; ; i++) {
            const r = await sh(o, 'echo alive', { timeoutMs: 60_000 });
            if (r.exitCode === 0) break;
            assert.ok(i < 60, `no command ran after the sleeps ended: ${r.stderr}`);
            await sleep(1000);
          }
        });
      },
    );

    workload(
      'memory bomb',
      'a memory bomb: its biggest process dies, the sandbox keeps working',
      async () => {
        await underLoad('memory bomb', async (o) => {
          const hog = 'a = []\nwhile True: a.append(bytearray(16 * 1024 * 1024))';
          const r = await sh(o, `python3 -c '${hog}'`);
          assert.ok(r instanceof CommandExitError, 'the hog failed');
          assert.match(r.error ?? '', /signal: killed/);
          assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
        });
      },
    );

    workload(
      'disk full',
      'writing past the disk, to / and to /tmp: ENOSPC inside, the host keeps its disk',
      async () => {
        await underLoad('disk full', async (o) => {
          const avail = Number((await o.commands.run('df -B1M --output=avail / | tail -n 1')).stdout.trim());
          await o.commands.run(`fallocate -l ${avail - 64}M /home/user/most`);
          for (const dir of ['/home/user', '/tmp']) {
            const r = await sh(o, `dd if=/dev/zero of=${dir}/fill bs=1M status=none`);
            assert.match(r.stderr, /No space left on device/);
          }
          assert.equal((await o.commands.run('rm /home/user/most && echo freed')).stdout, 'freed\n');
        });
      },
    );

    workload('inodes', 'inode exhaustion: ENOSPC inside, the sandbox keeps working', async () => {
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

    workload('cpu spin', 'a CPU spin on every core', async () => {
      await underLoad('cpu spin', async (o) => {
        await o.commands.run("for i in $(seq $(nproc)); do timeout 15 sh -c 'while :; do :; done' & done");
        await new Promise((r) => setTimeout(r, 12_000));
      });
    });

    workload('stdout flood', '100 MiB/s of stdout', async () => {
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

    workload('1000 ports', '1 000 listening ports', async () => {
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

    workload('ignores SIGTERM', 'a process that ignores SIGTERM does not stop the kill', async () => {
      await underLoad('ignores SIGTERM', async (o) => {
        await o.commands.run('setsid bash -c \'trap "" TERM; sleep 3600\' >/dev/null 2>&1 &');
      });
    });

    workload(
      'kill -9 envd',
      'kill -9 of envd: calls fail at once, and the sandbox ends with its reason',
      async () => {
        await underLoad('kill -9 envd', async (o) => {
          // The call that kills envd dies with it.
          // (envd runs the guest layer's node: the oldest such process.)
          await o.commands
            .run("sudo -n kill -9 $(pgrep -o -f '^/usr/local/lib/aiva/runtime/')")
            .catch(() => {});
          const r = await o.commands.run('true', { requestTimeoutMs: 10_000 }).catch((e: Error) => e);
          assert.ok(r instanceof Error, 'a command in a sandbox whose envd died fails');
          // The node sees its init exit within its monitor's interval (1 s), and the API says
          // why (the SDK words a 404 its own way: asked directly).
          let ended: { code?: number; message?: string } | undefined;
          for (let i = 0; i < 50 && !ended; i++) {
            const res = await fetch(`${server.up.url}/sandboxes/${o.sandboxId}`, {
              headers: { 'x-api-key': server.up.apiKey },
            });
            if (res.status === 404) ended = (await res.json()) as { code?: number; message?: string };
            else await res.body?.cancel();
            if (!ended) await sleep(200);
          }
          const reason = new RegExp(`not found: it ended \\(the ${driver} process \\(pid \\d+\\) exited`);
          assert.match(ended?.message ?? '', reason);
          await assert.rejects(Sandbox.getInfo(o.sandboxId), /not found/);
          assert.match(server.up.output(), /sandbox failed on its node/);
        });
      },
    );

    workload('kill -9 1', 'kill -9 of PID 1 from inside: ignored, the sandbox keeps working', async () => {
      await underLoad('kill -9 1', async (o) => {
        const r = await sh(o, 'sudo -n kill -9 1; echo sent');
        assert.equal(r.stdout, 'sent\n');
        await sleep(2000);
        assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
      });
    });

    workload('dns flood', 'a flood of queries to the sandbox’s DNS forwarder', async () => {
      await underLoad('dns flood', async (o) => {
        const flood = [
          'import random, socket, struct, time',
          'ns = [l.split()[1] for l in open("/etc/resolv.conf") if l.startswith("nameserver")][0]',
          's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setblocking(False)',
          'end, n = time.time() + 10, 0',
          'while time.time() < end:',
          '    q = struct.pack(">HHHHHH", random.randrange(65536), 0x0100, 1, 0, 0, 0) + b"\\x01x\\x07invalid\\x00\\x00\\x01\\x00\\x01"',
          '    try: s.sendto(q, (ns, 53)); n += 1',
          '    except BlockingIOError: pass',
          '    try:',
          '        while True: s.recv(512)',
          '    except BlockingIOError: pass',
          'print(n)',
        ].join('\n');
        const h = await o.commands.run(`python3 -c '${flood}'`, { background: true });
        await sleep(3000);
        // Meanwhile the neighbour's resolver answers (NXDOMAIN, from the test internet).
        assert.match((await neighbour.commands.run(`python3 -c '${ONE_QUERY}'`)).stdout, /^rcode \d+\n$/);
        const sent = Number((await h.wait()).stdout.trim());
        console.log(`# dns flood: ${Math.round(sent / 10)} queries/s sent`);
        assert.match((await o.commands.run(`python3 -c '${ONE_QUERY}'`)).stdout, /^rcode \d+\n$/);
      });
    });

    workload('proxy flood', 'a connection flood to the proxy', async () => {
      await underLoad('proxy flood', async (o) => {
        const url = new URL(server.up.url);
        let answered = 0;
        const end = Date.now() + 10_000;
        // 100 clients, each a new connection per request, to a port nothing listens on.
        const client = async () => {
          while (Date.now() < end) {
            const status = await new Promise<number>((resolve) => {
              const req = httpGet(
                {
                  host: url.hostname,
                  port: url.port,
                  path: '/',
                  agent: false,
                  headers: { 'e2b-sandbox-id': o.sandboxId, 'e2b-sandbox-port': '8000' },
                },
                (res) => {
                  res.resume();
                  resolve(res.statusCode ?? 0);
                },
              );
              req.on('error', () => resolve(0));
            });
            if (status > 0) answered++;
          }
        };
        await Promise.all(Array.from({ length: 100 }, client));
        console.log(`# proxy flood: ${Math.round(answered / 10)} requests/s answered`);
        assert.ok(answered > 0);
        assert.equal((await o.commands.run('echo alive')).stdout, 'alive\n');
      });
    });
  });
}
