import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand } from '../host/command.js';
import { type FileLock, lockFile } from '../host/file-lock.js';

/**
 * A small "internet" for tests and benchmarks, in a network namespace of its own: an
 * upstream router whose web servers and DNS server have addresses in 198.18.0.0/15 (the
 * benchmarking range, RFC 2544), reachable from the host by a veth and a route, and from
 * sandboxes only through the host's NAT (it has no route back to sandbox addresses).
 * It also answers on a few private, CGNAT and metadata addresses (FORBIDDEN), routed to it
 * from the host, so that tests of what sandboxes must not reach have a real target.
 * Nothing here ever talks to an address outside the namespaces it makes.
 *
 * One at a time per host (a lock under /run/aiva): its addresses are fixed.
 */
export class TestInternet {
  /** The host's end of the uplink: the address sandbox traffic arrives from, after NAT. */
  static readonly HOST_END = '198.18.0.1';
  static readonly ROUTER_END = '198.18.0.2';
  /** Web servers (HTTP :80, TCP echo :7), each on a /24 of its own. */
  static readonly WEB = ['198.18.1.10', '198.18.2.10', '198.18.3.10', '198.18.4.10'] as const;
  /**
   * Web servers on addresses of ranges sandboxes must never reach (private, CGNAT, cloud
   * metadata), routed from the host to this namespace too: if the firewall let a sandbox
   * through, it would reach these and not some real network.
   */
  static readonly FORBIDDEN = [
    '10.99.77.10',
    '172.16.77.10',
    '192.168.77.10',
    '100.64.77.10',
    '169.254.169.254',
  ] as const;
  /** The DNS server (UDP and TCP :53), answering from `setRecords`. */
  static readonly DNS = '198.18.1.53';

  /** Servers started by `serve`, ended by `stop`. */
  private readonly servers: ChildProcess[] = [];

  private constructor(
    readonly netns: string,
    readonly hostIf: string,
    private readonly dir: string,
    private readonly server: ChildProcess,
    private readonly lock: FileLock,
  ) {}

  /** `nameserver:port` for SandboxManager's `dnsUpstreams`. */
  get dnsUpstream(): string {
    return `${TestInternet.DNS}:53`;
  }

  static async start(records: Records = {}): Promise<TestInternet> {
    await mkdir('/run/aiva', { recursive: true });
    const lock = await lockFile('/run/aiva/test-internet.lock');
    const tag = Math.random().toString(36).slice(2, 8);
    const netns = `tnet-${tag}`;
    const hostIf = `tnet${tag}`;
    const dir = await mkdtemp(join(tmpdir(), 'aiva-tnet-'));
    let server: ChildProcess | undefined;
    try {
      await writeFile(join(dir, 'records.json'), JSON.stringify(records));
      const web = [...TestInternet.WEB, ...TestInternet.FORBIDDEN];
      await writeFile(
        join(dir, 'config.json'),
        JSON.stringify({ web, dns: TestInternet.DNS, records: join(dir, 'records.json') }),
      );
      await runCommand('ip', ['netns', 'add', netns]);
      await runCommand('ip', ['-batch', '-'], {
        input: [
          `link add ${hostIf} type veth peer name uplink netns ${netns}`,
          `link set ${hostIf} addrgenmode none`,
          `addr add ${TestInternet.HOST_END}/30 dev ${hostIf}`,
          `link set ${hostIf} up`,
          `route add 198.18.0.0/15 via ${TestInternet.ROUTER_END} dev ${hostIf}`,
        ].join('\n'),
      });
      await runCommand('ip', ['-n', netns, '-batch', '-'], {
        input: [
          'link set lo up',
          'link set uplink addrgenmode none',
          `addr add ${TestInternet.ROUTER_END}/30 dev uplink`,
          'link set uplink up',
          ...[...web, TestInternet.DNS].map((a) => `addr add ${a}/32 dev lo`),
        ].join('\n'),
      });
      const script = fileURLToPath(new URL('./test-internet-server.js', import.meta.url));
      const child = spawn(
        'nsenter',
        [`--net=/run/netns/${netns}`, '--', process.execPath, script, join(dir, 'config.json')],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      server = child;
      await new Promise<void>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`the test internet's servers exited (${code})`)));
        child.stdout?.on('data', (d: Buffer) => {
          if (d.toString().includes('ready')) resolve();
        });
      });
      return new TestInternet(netns, hostIf, dir, child, lock);
    } catch (e) {
      server?.kill('SIGKILL');
      await runCommand('ip', ['netns', 'del', netns]).catch(() => {});
      await runCommand('ip', ['link', 'del', hostIf]).catch(() => {});
      await rm(dir, { recursive: true, force: true });
      await lock.release();
      throw e;
    }
  }

  /** Replaces the DNS server's records (read again for every query). */
  async setRecords(records: Records): Promise<void> {
    await writeFile(join(this.dir, 'records.json.tmp'), JSON.stringify(records));
    await runCommand('mv', [join(this.dir, 'records.json.tmp'), join(this.dir, 'records.json')]);
  }

  /** Runs a command inside the test internet's namespace. */
  exec(argv: string[]): Promise<{ stdout: string; stderr: string }> {
    return runCommand('nsenter', [`--net=/run/netns/${this.netns}`, '--', ...argv]);
  }

  /**
   * Runs a server of the test's own inside the namespace until `stop` (e.g. `git daemon
   * --listen=<WEB address>`): `argv` must listen on TCP `address:port` (a WEB address and a
   * port other than 80 and 7, which the built-in servers hold). Resolves once it accepts
   * connections there; rejects, with its output, if it exits first or takes over 10 s.
   */
  async serve(argv: string[], address: string, port: number): Promise<void> {
    const child = spawn('nsenter', [`--net=/run/netns/${this.netns}`, '--', ...argv], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.servers.push(child);
    let output = '';
    for (const s of [child.stdout, child.stderr])
      s?.setEncoding('utf8').on('data', (d: string) => (output += d));
    const exited = new Promise((r) => child.once('exit', r));
    const deadline = Date.now() + 10_000;
    for (;;) {
      const up = await new Promise<boolean>((resolve) => {
        const s = connect({ host: address, port }, () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      });
      if (up) return;
      const gone = await Promise.race([exited.then(() => true), sleep(50).then(() => false)]);
      if (gone || Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${argv.join(' ')} did not listen on ${address}:${port}:\n${output}`);
      }
    }
  }

  /**
   * Serves `dir` over HTTP on `address:port` until `stop` (see test-internet-static.ts: the
   * files as they are, a directory's index.html or index.json): enough for an apt
   * repository, a PEP 503 package index or an npm registry the test writes into `dir`.
   */
  serveDirectory(dir: string, address: string, port: number): Promise<void> {
    const script = fileURLToPath(new URL('./test-internet-static.js', import.meta.url));
    return this.serve([process.execPath, script, address, String(port), dir], address, port);
  }

  async stop(): Promise<void> {
    for (const p of [...this.servers, this.server]) {
      if (p.exitCode !== null || p.signalCode !== null) continue;
      const exited = new Promise((r) => p.once('exit', r));
      p.kill('SIGTERM');
      await exited;
    }
    // Removing the namespace removes the veth pair, and the route with it.
    await runCommand('ip', ['netns', 'del', this.netns]).catch(() => {});
    await runCommand('ip', ['link', 'del', this.hostIf]).catch(() => {});
    await rm(this.dir, { recursive: true, force: true });
    await this.lock.release();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export type Records = Record<string, { A?: string[]; CNAME?: string; ttl?: number }>;
