// Issue 17's figures: a cluster on one host (`aiva server` on PostgreSQL, three node agents
// in network namespaces of their own, built by the e2e tests' harness, `@aiva/e2e/cluster`)
// next to `aiva up` on the same machine, both driven by the same e2b SDK. Create→first exec,
// the exec round trip and 100 MiB each way through a node's tunnel and through a node in
// direct mode (the server dials its TLS listener), and creates per second with 4 at a time
// across the three.

import { rm } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import {
  addServerAddress,
  type ClusterNode,
  type ClusterServer,
  killLeftSandboxes,
  makeNode,
  nodeCredentials,
  nodeLeftovers,
  removeNode,
  removeServerAddress,
  startAgent,
  startClusterServer,
} from '@aiva/e2e/cluster';
import { type PostgresServer, startPostgres } from '@aiva/e2e/postgres-server';
import { checkHost } from '@aiva/node';
import { Sandbox } from 'e2b';
import { aivaUpForSdk, benchScratch } from './aiva-up.js';
import { type Benchmark, type BenchRow, quantile, round } from './bench.js';

const median = (xs: number[]) =>
  quantile(
    [...xs].sort((a, b) => a - b),
    0.5,
  );

const CREATES = 10; // sequential create→first exec
const EXECS = 50; // commands.run('true') on one warm sandbox
const TRANSFERS = 3; // 100 MiB up and down
const BURSTS = 3; // rounds of BURST creates, CONCURRENCY at a time
const BURST = 12;
const CONCURRENCY = 4;
const NODES = 3;
/** The node in direct mode, and its listener's port (in its namespace). */
const DIRECT_NODE = 1;
const DIRECT_PORT = 7443;

/** Points the SDK (through its environment variables) at a server. */
function useServer(url: string, apiKey: string): void {
  process.env.E2B_API_URL = url;
  process.env.E2B_SANDBOX_URL = url;
  process.env.E2B_API_KEY = apiKey;
}

/** Metadata that places a sandbox on one node (none: wherever placement puts it). */
type Pin = Record<string, string> | undefined;

async function createToExec(pin?: Pin): Promise<{ ms: number; sbx: Sandbox }> {
  const t = performance.now();
  const sbx = await Sandbox.create({ timeoutMs: 600_000, ...(pin ? { metadata: pin } : {}) });
  await sbx.commands.run('true');
  return { ms: performance.now() - t, sbx };
}

/** One path's figures: create→first exec, exec round trip, transfers. */
interface PathFigures {
  createExec: number[];
  exec: number[];
  upload: number[];
  download: number[];
}

interface LoadFigures {
  /** Creates per second of each burst. */
  rate: number[];
  /** Each create's own create→first exec within the bursts. */
  burstCreate: number[];
}

/** Sequential creates, exec round trips and transfers, on the node `pin` names (or any). */
async function measurePath(label: string, pin?: Pin): Promise<PathFigures> {
  const f: PathFigures = { createExec: [], exec: [], upload: [], download: [] };
  process.stderr.write(`  ${label}: sequential create→first exec ×${CREATES} …\n`);
  for (let i = 0; i < CREATES; i++) {
    const r = await createToExec(pin);
    f.createExec.push(r.ms);
    await r.sbx.kill();
  }

  process.stderr.write(`  ${label}: exec round trips ×${EXECS}, 100 MiB transfers ×${TRANSFERS} …\n`);
  const sbx = await Sandbox.create({ timeoutMs: 600_000, ...(pin ? { metadata: pin } : {}) });
  try {
    await sbx.commands.run('true');
    for (let i = 0; i < EXECS; i++) {
      const t = performance.now();
      await sbx.commands.run('true');
      f.exec.push(performance.now() - t);
    }
    const data = Buffer.alloc(100 * 1024 * 1024, 7);
    for (let i = 0; i < TRANSFERS; i++) {
      let t = performance.now();
      await sbx.files.write('/tmp/blob', new Uint8Array(data).buffer);
      f.upload.push(100 / ((performance.now() - t) / 1000));
      t = performance.now();
      const back = await sbx.files.read('/tmp/blob', { format: 'bytes' });
      f.download.push(100 / ((performance.now() - t) / 1000));
      if (back.length !== data.length) throw new Error(`downloaded ${back.length} bytes, not ${data.length}`);
    }
  } finally {
    await sbx.kill();
  }
  return f;
}

/** Bursts of creates, CONCURRENCY at a time, wherever placement puts them. */
async function measureLoad(label: string): Promise<LoadFigures> {
  const f: LoadFigures = { rate: [], burstCreate: [] };
  for (let b = 0; b < BURSTS; b++) {
    process.stderr.write(
      `  ${label}: burst ${b + 1}/${BURSTS}: ${BURST} creates, ${CONCURRENCY} at a time …\n`,
    );
    const made: Sandbox[] = [];
    let next = 0;
    const t = performance.now();
    const worker = async () => {
      while (next < BURST) {
        next++;
        const r = await createToExec();
        made.push(r.sbx);
        f.burstCreate.push(r.ms);
      }
    };
    try {
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      f.rate.push(BURST / ((performance.now() - t) / 1000));
    } finally {
      await Promise.all(made.map((s) => s.kill()));
    }
  }
  return f;
}

/** Rows for one figure: the cluster's (through the tunnel, and direct when measured), `aiva up`'s, and the ratios. */
function sideBySide(
  metric: string,
  unit: string,
  cluster: number[],
  single: number[],
  how: string,
  direct?: number[],
): BenchRow[] {
  const c = median(cluster);
  const s = median(single);
  const digits = unit === 'ms' ? 1 : 2;
  const name = direct ? 'cluster (tunnel)' : 'cluster';
  const rows: BenchRow[] = [
    { metric: `${name} ${metric} p50`, value: round(c, digits), unit, detail: `n=${cluster.length}, ${how}` },
  ];
  if (direct) {
    const d = median(direct);
    rows.push({
      metric: `cluster (direct) ${metric} p50`,
      value: round(d, digits),
      unit,
      detail: `n=${direct.length}, ${how}`,
    });
  }
  rows.push(
    { metric: `aiva up ${metric} p50`, value: round(s, digits), unit, detail: `n=${single.length}, ${how}` },
    { metric: `${metric}: ${name} / aiva up`, value: round(c / s, 2), unit: '×', detail: 'of the p50s' },
  );
  if (direct)
    rows.push({
      metric: `${metric}: cluster (direct) / aiva up`,
      value: round(median(direct) / s, 2),
      unit: '×',
      detail: 'of the p50s',
    });
  return rows;
}

interface Cluster {
  db?: PostgresServer;
  server?: ClusterServer;
  nodes: ClusterNode[];
}

/** The cluster: PostgreSQL, `aiva server` on its veth address, NODES agents. */
async function withCluster<T>(fn: (nodeIds: string[]) => Promise<T>): Promise<T> {
  const c: Cluster = { nodes: [] };
  let left: string[] = [];
  let result: T;
  try {
    await addServerAddress();
    c.db = await startPostgres(54341);
    const server = await startClusterServer(c.db.url);
    c.server = server;
    useServer(server.url, server.apiKey);
    const made = await fetch(`${server.url}/v1/node-tokens`, {
      method: 'POST',
      headers: { 'x-api-key': server.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench' }),
    });
    if (made.status !== 201) throw new Error(`node token: ${made.status} ${await made.text()}`);
    const { token } = (await made.json()) as { token: string };
    const ids: string[] = [];
    for (let i = 1; i <= NODES; i++) {
      const n = await makeNode(i);
      c.nodes.push(n);
      // Node 1 says where the server can reach it: its traffic goes direct.
      const args = i === DIRECT_NODE ? ['--direct-address', `10.200.${i}.2:${DIRECT_PORT}`] : [];
      await startAgent(n, server.url, { token, args });
      ids.push((await nodeCredentials(n)).nodeId);
    }
    await readyNodes(server, NODES);
    result = await fn(ids);
  } finally {
    left = await tearDown(c);
  }
  if (left.length > 0) throw new Error(`nodes left resources behind (removed since):\n${left.join('\n')}`);
  return result;
}

/** The cluster test's teardown; returns what each node left on the host (then removed). */
async function tearDown({ db, server, nodes }: Cluster): Promise<string[]> {
  // Sandboxes first: an agent that stops leaves its sandboxes running, to adopt them.
  if (server) {
    const headers = { 'x-api-key': server.apiKey };
    const list = await fetch(`${server.url}/sandboxes`, { headers })
      .then((r) => r.json() as Promise<{ sandboxID: string }[]>)
      .catch(() => []);
    for (const s of list)
      await fetch(`${server.url}/sandboxes/${s.sandboxID}`, { method: 'DELETE', headers }).catch(() => {});
  }
  for (const n of nodes) await n.agent?.stop();
  await server?.stop();
  await db?.stop();
  const left: string[] = [];
  for (const n of nodes) {
    const l = await nodeLeftovers(n);
    if (Object.keys(l).length > 0) {
      left.push(`${n.name}: ${JSON.stringify(l)}`);
      await killLeftSandboxes(n).catch(() => {});
    }
    await removeNode(n);
  }
  await removeServerAddress();
  return left;
}

async function readyNodes(server: ClusterServer, count: number): Promise<void> {
  const end = Date.now() + 60_000;
  for (;;) {
    const r = await fetch(`${server.url}/v1/nodes`, { headers: { 'x-api-key': server.apiKey } });
    const nodes = (await r.json()) as { state: string; tunnel: boolean; mode: string }[];
    if (
      nodes.filter((n) => n.state === 'ready' && n.tunnel).length === count &&
      nodes.filter((n) => n.mode === 'direct').length === 1
    )
      return;
    if (Date.now() > end) throw new Error(`not ${count} ready nodes: ${JSON.stringify(nodes)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

export const clusterBenchmark: Benchmark = {
  name: 'cluster',
  description:
    'a cluster of 3 node agents on one host (one in direct mode) next to aiva up, same SDK: create→first exec, exec round trip, 100 MiB each way through a tunnel and direct, creates/s with 4 at a time',
  async run() {
    const runtime = (await checkHost()).defaultDriver ?? 'none';
    const scratch = await benchScratch('cluster');
    let single: PathFigures;
    let singleLoad: LoadFigures;
    try {
      const up = await aivaUpForSdk(join(scratch, 'up'), []);
      try {
        single = await measurePath('aiva up');
        singleLoad = await measureLoad('aiva up');
      } finally {
        await up.stop();
      }
    } finally {
      await rm(join(scratch, 'up', 'images'), { force: true });
      await rm(scratch, { recursive: true, force: true });
    }
    const pin = (id: string | undefined) => ({ 'aiva.placement.node': id ?? '' });
    const { tunnel, direct, load } = await withCluster(async (ids) => ({
      tunnel: await measurePath('cluster, a node through its tunnel', pin(ids[DIRECT_NODE])),
      direct: await measurePath('cluster, the node in direct mode', pin(ids[DIRECT_NODE - 1])),
      load: await measureLoad(`cluster of ${NODES}`),
    }));

    const rows: BenchRow[] = [
      ...sideBySide(
        'create→first exec',
        'ms',
        tunnel.createExec,
        single.createExec,
        'sequential Sandbox.create + commands.run("true")',
        direct.createExec,
      ),
      ...sideBySide('commands.run("true")', 'ms', tunnel.exec, single.exec, 'one warm sandbox', direct.exec),
      ...sideBySide(
        'upload 100 MiB',
        'MiB/s',
        tunnel.upload,
        single.upload,
        'files.write of bytes',
        direct.upload,
      ),
      ...sideBySide(
        'download 100 MiB',
        'MiB/s',
        tunnel.download,
        single.download,
        'files.read as bytes',
        direct.download,
      ),
      ...sideBySide(
        'creates per second',
        'creates/s',
        load.rate,
        singleLoad.rate,
        `bursts of ${BURST} creates→first exec, ${CONCURRENCY} at a time`,
      ),
      ...sideBySide(
        'create→first exec under load',
        'ms',
        load.burstCreate,
        singleLoad.burstCreate,
        `each create of the bursts (${CONCURRENCY} at a time)`,
      ),
    ];
    return {
      rows,
      environment: { cpus: availableParallelism(), runtime, nodes: NODES },
      notes: [
        `The cluster's ${NODES} nodes, its server and PostgreSQL share this one host (${availableParallelism()} CPUs) with the client; aiva up ran alone. Creates per second are bound by those shared CPUs, so they show what the cluster's path costs, not how three hosts would scale. The cluster's traffic crosses veth pairs into the nodes' namespaces.`,
        `"tunnel": sandboxes placed (aiva.placement.node) on node ${DIRECT_NODE + 1}, reached through its tunnel (reversed HTTP/2 over the node's outbound connection); "direct": on node ${DIRECT_NODE}, joined with --direct-address, reached by the server dialling its TLS listener (HTTP/2, certificate pinned). Same CONNECT streams and tickets on both; the creates per second spread over all ${NODES} nodes.`,
      ],
    };
  },
};
