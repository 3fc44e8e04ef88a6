import {
  type BuildLogEntry,
  type BuildResult,
  type BuildSpec,
  discardSnapshotsOf,
  envdMetrics,
  type LocalNode,
  type SandboxInfo,
  SandboxManager,
  SandboxNotFoundError,
} from '@aiva/node';
import type {
  NodeCheckpoint,
  NodeNetworkPolicy,
  NodeSandbox,
  NodeSandboxRequest,
  SandboxNode,
  SandboxUsage,
} from './sandbox-node.js';

function toNodeSandbox(s: SandboxInfo): NodeSandbox {
  return {
    id: s.id,
    // The control plane knows one paused state: in memory or saved to disk is the node's
    // affair; whether a resume boots it afresh is told apart (`withoutMemory`).
    state: s.state === 'suspended' || s.state === 'shelved' ? 'paused' : s.state,
    ...(s.state === 'shelved' ? { withoutMemory: true } : {}),
    vcpus: s.resources.vcpus,
    memoryMiB: s.resources.memoryMiB,
    diskMiB: s.resources.diskMiB,
    envdVersion: s.envdVersion ?? '0.0.1',
    error: s.error,
  };
}

/** The node of this host, running in the server's process (`aiva up`). */
export class LocalSandboxNode implements SandboxNode {
  readonly id = 'local';

  constructor(private readonly node: LocalNode) {}

  templates(): Promise<string[]> {
    return this.node.images.templateNames();
  }

  buildTemplate(
    spec: BuildSpec,
    log: (entry: BuildLogEntry) => void,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    return this.node.builder.build(spec, log, signal);
  }

  async removeLayers(layers: string[]): Promise<void> {
    const inUse = await SandboxManager.imagesInUse(this.node.images.options.home);
    const removed = await this.node.images.removeLayers(layers, { inUse });
    // VM snapshots of the images that went are of disks that are no more.
    if (removed.templates.length > 0)
      await discardSnapshotsOf(this.node.images.paths.snapshots, new Set(removed.templates));
  }

  async create(request: NodeSandboxRequest): Promise<NodeSandbox> {
    const info = await this.node.sandboxes.create({
      id: request.id,
      template: request.template,
      envd: { envVars: request.envVars, accessToken: request.accessToken },
      network: request.network,
      fromCheckpoint: request.fromCheckpoint,
    });
    return toNodeSandbox(info);
  }

  async claim(
    id: string,
    request: Pick<NodeSandboxRequest, 'accessToken' | 'envVars' | 'network'>,
  ): Promise<NodeSandbox> {
    const { network } = request;
    if (network && (network.allowInternetAccess === false || network.allowOut || network.denyOut))
      await this.node.sandboxes.updateNetwork(id, network);
    return toNodeSandbox(
      await this.node.sandboxes.reinit(id, { accessToken: request.accessToken, envVars: request.envVars }),
    );
  }

  async kill(id: string): Promise<boolean> {
    try {
      await this.node.sandboxes.kill(id);
      return true;
    } catch (e) {
      if (e instanceof SandboxNotFoundError) return false;
      throw e;
    }
  }

  async pause(id: string, options?: { memory?: boolean }): Promise<void> {
    await this.node.sandboxes.pause(id, options);
  }

  async updateNetwork(id: string, policy: NodeNetworkPolicy): Promise<void> {
    await this.node.sandboxes.updateNetwork(id, policy);
  }

  async resume(id: string, options?: { memory?: boolean }): Promise<void> {
    await this.node.sandboxes.resume(id, options);
  }

  async checkpoint(id: string, name: string): Promise<NodeCheckpoint> {
    const c = await this.node.sandboxes.checkpoint(id, name);
    return { name: c.name, memory: c.memory, bytes: c.bytes };
  }

  removeCheckpoint(name: string): Promise<boolean> {
    return this.node.sandboxes.removeCheckpoint(name);
  }

  async checkpoints(): Promise<string[]> {
    return (await this.node.sandboxes.listCheckpoints()).map((c) => c.name);
  }

  get(id: string): NodeSandbox | undefined {
    try {
      return toNodeSandbox(this.node.sandboxes.get(id));
    } catch (e) {
      if (e instanceof SandboxNotFoundError) return undefined;
      throw e;
    }
  }

  list(): NodeSandbox[] {
    return this.node.sandboxes.list().map(toNodeSandbox);
  }

  endpoint(id: string, port: number): { host: string; port: number } | undefined {
    try {
      const s = this.node.sandboxes.get(id);
      if (s.state !== 'running' || !s.network) return undefined;
      return { host: s.network.address, port };
    } catch (e) {
      if (e instanceof SandboxNotFoundError) return undefined;
      throw e;
    }
  }

  async usage(id: string): Promise<SandboxUsage> {
    const s = this.node.sandboxes.get(id);
    if (!s.network) throw new SandboxNotFoundError(id);
    const m = await envdMetrics(s.network.address, s.accessToken);
    return {
      timestamp: new Date(m.ts * 1000),
      cpuCount: m.cpu_count,
      cpuUsedPct: m.cpu_used_pct,
      memUsed: m.mem_used,
      memTotal: m.mem_total,
      memCache: m.mem_cache ?? 0,
      diskUsed: m.disk_used,
      diskTotal: m.disk_total,
    };
  }

  consoleLog(id: string): Promise<string> {
    return this.node.sandboxes.consoleLog(id);
  }

  onSandboxFailed(listener: (id: string, reason: string) => void): void {
    this.node.sandboxes.on('state', (s) => {
      if (s.state === 'error') listener(s.id, s.error ?? 'the sandbox failed');
    });
  }
}
