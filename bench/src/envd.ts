// envd through the e2b SDK in a throwaway sandbox (the test harness): the command round
// trip and file transfer throughput.
import { randomBytes } from 'node:crypto';
import { get } from 'node:http';
import { cpus } from 'node:os';
import { ENVD_URL, GuestSandbox } from '@aiva/envd/test-harness';
import { Sandbox } from 'e2b';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const ROUND_TRIPS = 200;
const WARMUP = 20;
const TRANSFER_MIB = 100;

async function roundTrips(sbx: Sandbox): Promise<BenchRow[]> {
  for (let i = 0; i < WARMUP; i++) await sbx.commands.run('true');
  const ms: number[] = [];
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t = performance.now();
    await sbx.commands.run('true');
    ms.push(performance.now() - t);
  }
  ms.sort((a, b) => a - b);
  const detail = `n=${ROUND_TRIPS} after ${WARMUP} warm-up runs; bash -l -c true as user`;
  return [
    { metric: "commands.run('true') p50", value: round(quantile(ms, 0.5)), unit: 'ms', detail },
    { metric: "commands.run('true') p95", value: round(quantile(ms, 0.95)), unit: 'ms', detail },
    {
      metric: "commands.run('true') mean",
      value: round(ms.reduce((a, b) => a + b, 0) / ms.length),
      unit: 'ms',
      detail,
    },
  ];
}

async function transfers(sbx: Sandbox): Promise<BenchRow[]> {
  const data = randomBytes(TRANSFER_MIB * 1024 * 1024);
  const path = '/home/user/bench-100mib.bin';
  const rows: BenchRow[] = [];
  const mibps = (ms: number) => round(TRANSFER_MIB / (ms / 1000), 1);

  for (const [label, opts] of [
    ['upload (multipart)', {}],
    ['upload (octet-stream)', { useOctetStream: true }],
  ] as const) {
    const t = performance.now();
    const info = await sbx.files.write(
      path,
      data.buffer.slice(data.byteOffset, data.byteOffset + data.length),
      opts,
    );
    const ms = performance.now() - t;
    if (Array.isArray(info) || info.path !== path)
      throw new Error(`unexpected upload result ${JSON.stringify(info)}`);
    const size = (await sbx.files.getInfo(path)).size;
    if (size !== data.length) throw new Error(`uploaded ${size} bytes, expected ${data.length}`);
    rows.push({
      metric: `${TRANSFER_MIB} MiB ${label}`,
      value: mibps(ms),
      unit: 'MiB/s',
      detail: `${round(ms, 0)} ms, random bytes`,
    });
  }

  const t = performance.now();
  const got = await sbx.files.read(path, { format: 'bytes' });
  const ms = performance.now() - t;
  if (got.length !== data.length || !Buffer.from(got).equals(data))
    throw new Error('downloaded bytes differ');
  rows.push({
    metric: `${TRANSFER_MIB} MiB download`,
    value: mibps(ms),
    unit: 'MiB/s',
    detail: `${round(ms, 0)} ms, files.read bytes, gzip (fetch asks for it), verified`,
  });

  // The same download with node:http instead of fetch: what envd itself serves (the
  // SDK's fetch-based read is limited by the client's body handling).
  const t2 = performance.now();
  const received = await new Promise<number>((resolve, reject) => {
    get(`${ENVD_URL}/files?path=${encodeURIComponent(path)}&username=user`, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => {
        n += c.length;
      });
      res.on('end', () => resolve(n));
      res.on('error', reject);
    }).on('error', reject);
  });
  const ms2 = performance.now() - t2;
  if (received !== data.length) throw new Error(`node:http got ${received} bytes`);
  rows.push({
    metric: `${TRANSFER_MIB} MiB download (node:http)`,
    value: mibps(ms2),
    unit: 'MiB/s',
    detail: `${round(ms2, 0)} ms, same endpoint without fetch`,
  });
  await sbx.files.remove(path);
  return rows;
}

export const envdBenchmark: Benchmark = {
  name: 'envd',
  description: 'envd via the e2b SDK (debug mode) in a namespace/chroot sandbox of the base template',
  async run() {
    const sandbox = await GuestSandbox.start();
    try {
      const init = await sandbox.init({ defaultUser: 'user', defaultWorkdir: '/home/user' });
      if (init.status !== 204) throw new Error(`init failed: ${init.status} ${await init.text()}`);
      const sbx = await Sandbox.connect('debug_sandbox_id', { debug: true });
      const rows = [...(await roundTrips(sbx)), ...(await transfers(sbx))];
      return {
        rows,
        environment: {
          cpus: cpus().length,
          cpuModel: cpus()[0]?.model ?? 'unknown',
          hostNode: process.version,
          transport: 'HTTP/1.1 over host loopback',
        },
      };
    } finally {
      await sandbox.stop();
    }
  },
};
