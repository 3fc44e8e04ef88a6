// Several nodes on one host (issue 17's cluster tests run them so): each in a network
// namespace of its own, with its own data directory and HostScope. One node's start-up
// sweep leaves the other's sandbox, cgroup and namespace alone; their sandboxes get
// disjoint host ids; the host's only (untagged) node leaves both alone too.
import assert from 'node:assert/strict';
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { access } from 'node:fs/promises';
import { createInterface, type Interface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Cgroup } from '../src/host/cgroups.js';
import { type HostResources, hostResources, leftoverHostResources } from '../src/host/host-resources.js';
import { HostScope } from '../src/host/host-scope.js';
import { idmappedOverlaySupported } from '../src/host/idmapped-overlay.js';
import { runCommand, type SandboxInfo } from '../src/index.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import type { ScopedNodeCommand, ScopedNodeOptions } from './helpers/scoped-node.js';
import { tempDir } from './helpers/temp-dir.js';
import { closeManager, testManager } from './helpers/test-node.js';

const childScript = fileURLToPath(new URL('./helpers/scoped-node.js', import.meta.url));

/** A node process in network namespace `netns`, driven line by line. */
class NodeProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: Interface;
  private readonly answers: string[] = [];
  private waiting: ((line: string) => void) | undefined;
  stderr = '';

  constructor(netns: string, options: ScopedNodeOptions) {
    this.child = spawn('nsenter', [
      `--net=/run/netns/${netns}`,
      '--',
      process.execPath,
      '--enable-source-maps',
      childScript,
      JSON.stringify(options),
    ]);
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.lines = createInterface({ input: this.child.stdout });
    this.lines.on('line', (l) => {
      if (this.waiting) this.waiting(l);
      else this.answers.push(l);
    });
  }

  async send<T>(c: ScopedNodeCommand): Promise<T> {
    this.child.stdin.write(`${JSON.stringify(c)}\n`);
    const line =
      this.answers.shift() ??
      (await new Promise<string>((resolve, reject) => {
        const onExit = () => reject(new Error(`the node process exited: ${this.stderr}`));
        this.child.once('exit', onExit);
        this.waiting = (l) => {
          this.waiting = undefined;
          this.child.off('exit', onExit);
          resolve(l);
        };
      }));
    const a = JSON.parse(line) as { ok: boolean; data?: T; error?: string };
    if (!a.ok) throw new Error(`${c.op}: ${a.error}`);
    return a.data as T;
  }

  async exec(id: string, command: string): Promise<string> {
    const r = await this.send<{ exitCode: number; stdout: string; stderr: string }>({
      op: 'exec',
      id,
      command,
    });
    assert.equal(r.exitCode, 0, `${command}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  }

  /** Ends the process (its sandboxes are killed by then) and waits for it. */
  async end(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.stdin.end();
    await exited;
  }
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

checkHostLeaks();
const support = await idmappedOverlaySupported();
const nodes = [
  { tag: 'ta', netns: 'aivat-ta', addressBlock: '10.201.0.0/22', idSlotOffset: 8192, slots: 256 },
  { tag: 'tb', netns: 'aivat-tb', addressBlock: '10.202.0.0/22', idSlotOffset: 8448, slots: 256 },
].map(async (n) => ({ ...n, home: await tempDir(`aiva-node-${n.tag}-`), scope: new HostScope(n) }));
const [na, nb] = await Promise.all(nodes);
if (!na || !nb) throw new Error('two nodes');

describe('two nodes on one host, each in its own network namespace', () => {
  const procs = new Map<string, NodeProcess>();
  const baselines = new Map<string, HostResources>();
  let a: SandboxInfo;
  let b: SandboxInfo;
  const filter = (n: typeof na) => ({ scope: n.scope, home: n.home, netns: n.netns, addressSlots: n.slots });

  before(async () => {
    for (const n of [na, nb]) {
      await runCommand('ip', ['netns', 'add', n.netns]);
      await runCommand('ip', ['-n', n.netns, 'link', 'set', 'lo', 'up']);
      baselines.set(n.tag, await hostResources(filter(n)));
      const p = new NodeProcess(n.netns, {
        home: n.home,
        tag: n.tag,
        addressBlock: n.addressBlock,
        idSlotOffset: n.idSlotOffset,
      });
      procs.set(n.tag, p);
      await p.send({ op: 'open' });
    }
    const pa = procs.get('ta') as NodeProcess;
    const pb = procs.get('tb') as NodeProcess;
    [a, b] = await Promise.all([
      pa.send<SandboxInfo>({ op: 'create' }),
      pb.send<SandboxInfo>({ op: 'create' }),
    ]);
  });

  after(async () => {
    for (const p of procs.values()) await p.end();
    for (const n of [na, nb]) {
      const left = await leftoverHostResources(baselines.get(n.tag) as HostResources, filter(n));
      await runCommand('ip', ['netns', 'del', n.netns]).catch(() => {});
      assert.deepEqual(left, {}, `node ${n.tag} left resources behind`);
    }
  });

  test('each sandbox is named by its node: namespace, cgroup, state directory', async () => {
    assert.equal(a.network?.netns, 'aiva-tan0');
    assert.equal(b.network?.netns, 'aiva-tbn0');
    for (const [s, n] of [
      [a, na],
      [b, nb],
    ] as const) {
      assert.ok(await (await Cgroup.at(`aiva/${n.tag}/${s.id}`)).exists(), `cgroup aiva/${n.tag}/${s.id}`);
      assert.ok(await exists(`/run/netns/${s.network?.netns}`));
      assert.ok(await exists(`/run/aiva/nodes/${n.tag}/node.lock`));
    }
  });

  test('the two sandboxes get disjoint host id ranges', {
    skip: support.supported ? false : support.reason,
  }, () => {
    const ra = a.network?.userns;
    const rb = b.network?.userns;
    assert.ok(ra && rb, 'both sandboxes have user namespaces');
    assert.ok(ra.hostId + ra.count <= rb.hostId || rb.hostId + rb.count <= ra.hostId, 'disjoint');
    assert.equal(ra.hostId, 2 ** 30 + 8192 * 65536);
  });

  test('reopening one node (its start-up sweep) leaves the other’s sandbox running', async () => {
    const pa = procs.get('ta') as NodeProcess;
    const pb = procs.get('tb') as NodeProcess;
    await pa.send({ op: 'close' });
    const adopted = await pa.send<SandboxInfo[]>({ op: 'open' });
    assert.deepEqual(
      adopted.map((s) => s.id),
      [a.id],
      'node ta adopted its own sandbox',
    );
    assert.ok(await (await Cgroup.at(`aiva/tb/${b.id}`)).exists(), 'tb’s cgroup survived');
    assert.ok(await exists(`/run/netns/${b.network?.netns}`), 'tb’s namespace survived');
    assert.equal((await pb.exec(b.id, 'echo alive')).trim(), 'alive');
    assert.equal((await pa.exec(a.id, 'echo adopted')).trim(), 'adopted');
  });

  test('the host’s untagged node, opened and closed, leaves both nodes’ sandboxes alone', async () => {
    const m = await testManager();
    await closeManager(m);
    for (const [s, n] of [
      [a, na],
      [b, nb],
    ] as const) {
      assert.ok(await (await Cgroup.at(`aiva/${n.tag}/${s.id}`)).exists(), `cgroup of ${n.tag}`);
      assert.ok(await exists(`/run/netns/${s.network?.netns}`), `namespace of ${n.tag}`);
      assert.equal((await (procs.get(n.tag) as NodeProcess).exec(s.id, 'echo ok')).trim(), 'ok');
    }
  });

  test('killing one node’s sandboxes and closing it removes its cgroup parent', async () => {
    const pa = procs.get('ta') as NodeProcess;
    await pa.send({ op: 'kill-all' });
    await pa.send({ op: 'close' });
    assert.equal(await (await Cgroup.at('aiva/ta')).exists(), false);
    assert.ok(await (await Cgroup.at(`aiva/tb/${b.id}`)).exists(), 'tb’s sandbox is still there');
  });
});
