import { randomUUID } from 'node:crypto';
import { readdir, readFile, statfs } from 'node:fs/promises';
import { availableParallelism, loadavg, totalmem } from 'node:os';
import { formatProtocol, NODE_PROTOCOL, type NodeSnapshot } from '@aiva/protocol/node';
import type { NodeExecutor } from './node-executor.js';

// What a node reports of itself (the contract's NodeSnapshot), from facts that are cheap
// to gather every few seconds: no `du`, no walk of the image store.

export interface NodeSnapshotOptions {
  nodeId: string;
  aivaVersion: string;
  /** The memory its sandboxes may be given in all. */
  memoryBudgetMiB: number;
  maxSandboxes?: number;
  /** The direct listener, when there is one: its address and certificate fingerprint. */
  direct?: NodeSnapshot['direct'];
}

const MiB = 1024 * 1024;

/** MemAvailable of /proc/meminfo, in MiB (the kernel's estimate of what can be had without swapping). */
async function memAvailableMiB(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8');
  const kib = Number(/^MemAvailable:\s+(\d+) kB/m.exec(text)?.[1] ?? 0);
  return Math.floor(kib / 1024);
}

/** Names in `dir`, none if it does not exist. */
async function names(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** Builds a node's snapshots: each one numbered within this boot of the node. */
export class NodeSnapshotter {
  readonly bootId = randomUUID();
  private seq = 0;

  constructor(
    private readonly executor: NodeExecutor,
    private readonly options: NodeSnapshotOptions,
  ) {}

  async take(): Promise<NodeSnapshot> {
    const { node } = this.executor;
    const home = node.images.options.home;
    const [disk, available, recipes, images, checkpoints, layers] = await Promise.all([
      statfs(home),
      memAvailableMiB(),
      node.images.templateNames(),
      names(node.images.paths.images),
      node.sandboxes.listCheckpoints(),
      node.images.artefacts.layerHashes(),
    ]);
    const ended = this.executor.deadlines.recentlyEnded();
    return {
      protocol: formatProtocol(NODE_PROTOCOL),
      nodeId: this.options.nodeId,
      bootId: this.bootId,
      seq: this.seq++,
      sentAt: new Date().toISOString(),
      versions: { aiva: this.options.aivaVersion },
      drivers: node.host.checks.filter((c) => c.available).map((c) => c.driver),
      ...(node.host.defaultDriver ? { defaultDriver: node.host.defaultDriver } : {}),
      capacity: {
        cores: availableParallelism(),
        memoryMiB: Math.floor(totalmem() / MiB),
        memoryBudgetMiB: this.options.memoryBudgetMiB,
        diskMiB: Math.floor((disk.blocks * disk.bsize) / MiB),
        ...(this.options.maxSandboxes !== undefined ? { maxSandboxes: this.options.maxSandboxes } : {}),
      },
      free: {
        memAvailableMiB: available,
        diskFreeMiB: Math.floor((disk.bavail * disk.bsize) / MiB),
        load1: loadavg()[0] ?? 0,
      },
      artefacts: { recipes, images: images.filter((n) => /^[0-9a-f]{16,}$/.test(n)), layers },
      checkpoints: checkpoints.map((c) => ({ name: c.name, memory: c.memory, bytes: c.bytes })),
      ...(this.options.direct ? { direct: this.options.direct } : {}),
      ...(ended.length > 0 ? { ended } : {}),
      sandboxes: this.executor.list(),
    };
  }
}
