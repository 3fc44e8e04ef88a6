// Sandbox networking: TCP throughput and round-trip latency sandbox ↔ host and sandbox ↔
// the test internet (a namespace behind the host's NAT, see TestInternet), per runtime;
// and what network setup costs per sandbox, with and without a pool of ready namespaces.
// Medians. Nothing leaves the namespaces this benchmark makes.

import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  checkHost,
  type DriverName,
  dataDir,
  execInSandbox,
  ImageStore,
  lockFile,
  type SandboxInfo,
  SandboxManager,
} from '@aiva/node';
import { createRuntimes, SandboxNetworking, TestInternet } from '@aiva/node/testkit';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const recipesDir = new URL('../../../images', import.meta.url).pathname;
const envdDir = new URL('../../../packages/envd/dist/guest', import.meta.url).pathname;

const PORT = 5201;
const MIB = 1024 * 1024;
/** Per runtime: bytes per throughput run, runs, round trips. TCG emulates every instruction: less. */
const PLAN: Record<string, { bytes: number; runs: number; rtts: number }> = {
  container: { bytes: 512 * MIB, runs: 5, rtts: 2000 },
  'qemu-microvm': { bytes: 32 * MIB, runs: 3, rtts: 300 },
};

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

/**
 * A TCP server for the sandbox (Node, written to a file there): a connection's first byte
 * picks the test — `s` sink (counts N bytes, answers one byte), `g` source (sends N
 * bytes), `e` echo.
 */
const SANDBOX_SERVER = `
const net = require('net');
net.createServer((c) => {
  let mode, want = 0, got = 0, head = Buffer.alloc(0);
  c.on('data', (d) => {
    if (!mode) {
      head = Buffer.concat([head, d]);
      if (head.length < 9) return;
      mode = String.fromCharCode(head[0]); want = Number(head.readBigUInt64BE(1));
      d = head.subarray(9);
      if (mode === 'g') {
        const chunk = Buffer.alloc(1 << 20); let left = want;
        const pump = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!c.write(chunk.subarray(0, n))) return c.once('drain', pump); } };
        return pump();
      }
    }
    if (mode === 's') { got += d.length; if (got >= want) c.write('k'); }
    else if (mode === 'e') c.write(d);
  });
  c.on('error', () => {});
}).listen(${PORT}, '0.0.0.0', () => console.log('listening'));
`;

/** The sandbox's side towards the test internet: download, upload (HTTP) and echo round trips, as JSON. */
const INTERNET_CLIENT = (web: string, bytes: number, runs: number, rtts: number) => `
const http = require('http'); const net = require('net');
const now = () => Number(process.hrtime.bigint()) / 1e6;
const down = () => new Promise((res, rej) => { const t = now(); http.get('http://${web}/bytes?n=${bytes}', (r) => { let n = 0; r.on('data', (d) => { n += d.length; }); r.on('end', () => res(now() - t)); }).on('error', rej); });
const up = () => new Promise((res, rej) => { const t = now(); const req = http.request({ host: '${web}', path: '/sink', method: 'POST', headers: { 'content-length': ${bytes} } }, (r) => { r.resume(); r.on('end', () => res(now() - t)); }); req.on('error', rej); const chunk = Buffer.alloc(1 << 20); let left = ${bytes}; const pump = () => { while (left > 0) { const n = Math.min(left, chunk.length); left -= n; if (!req.write(chunk.subarray(0, n))) return req.once('drain', pump); } req.end(); }; pump(); });
const echo = () => new Promise((res) => { const c = net.connect({ host: '${web}', port: 7 }); c.setNoDelay(true); const out = []; let t; c.on('connect', () => { t = now(); c.write('x'); }); c.on('data', () => { out.push(now() - t); if (out.length >= ${rtts}) { c.destroy(); res(out); } else { t = now(); c.write('x'); } }); });
(async () => { const d = [], u = []; for (let i = 0; i < ${runs}; i++) { d.push(await down()); u.push(await up()); } console.log(JSON.stringify({ down: d, up: u, rtt: await echo() })); })();
`;

/** A shell command that writes `script` to `path` in the sandbox (base64: no quoting to get wrong). */
const writeScript = (path: string, script: string) =>
  `echo ${Buffer.from(script).toString('base64')} | base64 -d > ${path}`;

function openSocket(host: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const c = connect({ host, port: PORT });
    c.setNoDelay(true);
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

const header = (mode: string, n: number) => {
  const b = Buffer.alloc(9);
  b.write(mode, 0);
  b.writeBigUInt64BE(BigInt(n), 1);
  return b;
};

/** Host → sandbox: ms to send `bytes` until the sandbox says it has them all. */
async function hostToSandbox(address: string, bytes: number): Promise<number> {
  const c = await openSocket(address);
  const t = performance.now();
  const done = new Promise<void>((r) => c.once('data', () => r()));
  c.write(header('s', bytes));
  const chunk = Buffer.alloc(MIB);
  for (let left = bytes; left > 0; ) {
    const n = Math.min(left, chunk.length);
    left -= n;
    if (!c.write(chunk.subarray(0, n))) await new Promise((r) => c.once('drain', r));
  }
  await done;
  const ms = performance.now() - t;
  c.destroy();
  return ms;
}

/** Sandbox → host (on a connection the host opened): ms to receive `bytes`. */
async function sandboxToHost(address: string, bytes: number): Promise<number> {
  const c = await openSocket(address);
  const t = performance.now();
  let got = 0;
  await new Promise<void>((r) => {
    c.on('data', (d) => {
      got += d.length;
      if (got >= bytes) r();
    });
    c.write(header('g', bytes));
  });
  const ms = performance.now() - t;
  c.destroy();
  return ms;
}

/** Round trips of one byte on a host-opened connection, in ms. */
async function hostRtts(address: string, n: number): Promise<number[]> {
  const c = await openSocket(address);
  c.write(header('e', 0));
  const out: number[] = [];
  await new Promise<void>((r) => {
    let t = performance.now();
    c.on('data', () => {
      out.push(performance.now() - t);
      if (out.length >= n) return r();
      t = performance.now();
      c.write('x');
    });
    c.write('x');
  });
  c.destroy();
  return out;
}

const gbps = (bytes: number, ms: number) => round((bytes * 8) / (ms / 1000) / 1e9, 2);

async function measureTraffic(m: SandboxManager, driver: DriverName, rows: BenchRow[]): Promise<void> {
  const plan = PLAN[driver] ?? { bytes: 32 * MIB, runs: 3, rtts: 300 };
  const s: SandboxInfo = await m.create({ driver, memoryMiB: 512, vcpus: 1 });
  try {
    const address = s.network?.address ?? '';
    const exec = (cmd: string) =>
      execInSandbox(address, cmd, { accessToken: s.accessToken, timeoutMs: 600_000 });
    await exec(
      `${writeScript('/tmp/bench-server.js', SANDBOX_SERVER)} && (setsid node /tmp/bench-server.js > /tmp/bench-server.log 2>&1 &)`,
    );
    for (let i = 0; ; i++) {
      const log = (await exec('cat /tmp/bench-server.log')).stdout;
      if (log.includes('listening')) break;
      if (i >= 600) throw new Error(`the benchmark's server did not start in the sandbox:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    const detail = `${driver}, ${plan.bytes / MIB} MiB × ${plan.runs}, median`;
    const toSandbox: number[] = [];
    const fromSandbox: number[] = [];
    for (let i = 0; i < plan.runs; i++) {
      toSandbox.push(await hostToSandbox(address, plan.bytes));
      fromSandbox.push(await sandboxToHost(address, plan.bytes));
    }
    const rtt = await hostRtts(address, plan.rtts);
    const r = await exec(
      `${writeScript('/tmp/bench-client.js', INTERNET_CLIENT(TestInternet.WEB[0], plan.bytes, plan.runs, plan.rtts))} && node /tmp/bench-client.js`,
    );
    const inet = JSON.parse(r.stdout) as { down: number[]; up: number[]; rtt: number[] };
    rows.push(
      {
        metric: `${driver} host → sandbox`,
        value: gbps(plan.bytes, median(toSandbox)),
        unit: 'Gbit/s',
        detail,
      },
      {
        metric: `${driver} sandbox → host`,
        value: gbps(plan.bytes, median(fromSandbox)),
        unit: 'Gbit/s',
        detail,
      },
      {
        metric: `${driver} host ↔ sandbox round trip`,
        value: round(median(rtt) * 1000, 0),
        unit: 'µs',
        detail: `${driver}, 1-byte echo on a host-opened connection, ${plan.rtts} round trips, median`,
      },
      {
        metric: `${driver} test internet → sandbox (download)`,
        value: gbps(plan.bytes, median(inet.down)),
        unit: 'Gbit/s',
        detail: `${detail}, HTTP through NAT`,
      },
      {
        metric: `${driver} sandbox → test internet (upload)`,
        value: gbps(plan.bytes, median(inet.up)),
        unit: 'Gbit/s',
        detail: `${detail}, HTTP through NAT`,
      },
      {
        metric: `${driver} sandbox ↔ test internet round trip`,
        value: round(median(inet.rtt) * 1000, 0),
        unit: 'µs',
        detail: `${driver}, 1-byte echo through NAT, ${plan.rtts} round trips, median (timed in the sandbox)`,
      },
    );
  } finally {
    await m.kill(s.id);
  }
}

/**
 * Network setup per sandbox (namespace, link, TAP for microVMs, firewall chain, DNS
 * listener: SandboxNetworking.attach), from nothing and from a ready pool. Holds the
 * node lock meanwhile, as a node would.
 */
async function measureSetup(rows: BenchRow[]): Promise<void> {
  const lock = await lockFile('/run/aiva/node.lock');
  const n = 20;
  try {
    for (const mode of ['namespace', 'tap'] as const) {
      for (const poolSize of [0, n]) {
        const net = new SandboxNetworking({ poolSize, dnsUpstreams: ['127.0.0.1:9'] });
        await net.start([]);
        try {
          await net.poolFilled();
          const ms: number[] = [];
          const made: { id: string; slot: number; netns: string }[] = [];
          for (let i = 0; i < n; i++) {
            const t = performance.now();
            const r = net.reserve();
            const a = await net.attach(`bench${i}`, r, mode, {});
            ms.push(performance.now() - t);
            made.push({ id: `bench${i}`, slot: r.link.slot, netns: a.netns });
          }
          for (const x of made)
            await net.detach({ id: x.id, slot: x.slot, network: { netns: x.netns } as never });
          rows.push({
            metric: `network setup per sandbox (${mode === 'tap' ? 'microVM: TAP' : 'container'}), ${poolSize ? 'from the pool' : 'no pool'}`,
            value: round(median(ms), 1),
            unit: 'ms',
            detail: `median of ${n}; namespace, veth, ${mode === 'tap' ? 'TAP + NAT, ' : ''}firewall chain, DNS listener`,
          });
        } finally {
          await net.close();
        }
      }
    }
  } finally {
    await lock.release();
  }
}

export const networkBenchmark: Benchmark = {
  name: 'network',
  description:
    'TCP throughput and latency sandbox↔host and sandbox↔test internet; network setup cost with and without a pool',
  async run() {
    const images = new ImageStore({ home: dataDir(), recipesDir, envdDir });
    const host = await checkHost();
    const runtimes = createRuntimes(host);
    const rows: BenchRow[] = [];
    await measureSetup(rows);
    const inet = await TestInternet.start();
    const home = await mkdtemp(join(tmpdir(), 'aiva-bench-'));
    try {
      for (const poolSize of [0, 4]) {
        const m = await SandboxManager.open({
          home: join(home, `pool${poolSize}`),
          images,
          runtimes,
          defaultDriver: 'container',
          dnsUpstreams: [inet.dnsUpstream],
          networkPoolSize: poolSize,
          waitForLock: true,
        });
        try {
          const ms: number[] = [];
          for (let i = 0; i < 10; i++) {
            await m.fillNetworkPool();
            const t = performance.now();
            const s = await m.create({ memoryMiB: 256, vcpus: 1 });
            ms.push(performance.now() - t);
            await m.kill(s.id);
          }
          rows.push({
            metric: `container create→envd-ready, ${poolSize ? `pool of ${poolSize}` : 'no pool'}`,
            value: round(median(ms), 1),
            unit: 'ms',
            detail: 'median of 10, runc, 1 vCPU, 256 MiB',
          });
          if (poolSize === 0) {
            for (const driver of ['container', 'qemu-microvm'] as DriverName[]) {
              if (runtimes.has(driver)) {
                process.stderr.write(`  traffic: ${driver} …\n`);
                await measureTraffic(m, driver, rows);
              }
            }
          }
        } finally {
          await m.killAll();
          await m.close();
        }
      }
    } finally {
      await inet.stop();
      await rm(home, { recursive: true, force: true });
    }
    const qemu = host.checks.find((c) => c.driver === 'qemu-microvm' && c.available);
    return { rows, environment: { cpus: availableParallelism(), kvm: qemu?.variant ?? 'none' } };
  },
};
