import { randomUUID } from 'node:crypto';
import type {
  BuildLogLine,
  BuildRequest,
  BuildResultData,
  CommandPayload,
  CommandResult,
  NodeCheckpoint,
  NodeCommand,
  NodeCommandKind,
  NodeFailure,
  NodeNetworkPolicy,
  NodeSandbox,
  SandboxUsage,
  TemplateDefinitionData,
  VolumeMount,
} from '@aiva/protocol/node';
import { NodeCommandError } from '@aiva/protocol/node';
import {
  BuildStepFailedError,
  ConflictError,
  InvalidRequestError,
  InvalidStateError,
  NotFoundError,
} from '../services/errors.js';
import type { NodeEndpoint, NodeLink } from './node-link.js';

export interface NodeSandboxRequest {
  id: string;
  /** A recipe template's name (`base`), or a built template's definition. */
  template: string | TemplateDefinitionData;
  envVars?: Record<string, string>;
  /** envd's access token for the sandbox. */
  accessToken: string;
  network?: NodeNetworkPolicy;
  /** Start from this checkpoint instead of from `template`. */
  fromCheckpoint?: string;
  /** Volumes of the node bound into the sandbox (protocol 1.3). */
  volumes?: VolumeMount[];
  /** Sizes other than the template's (a named environment's). */
  size?: { vcpus?: number; memoryMiB?: number; diskMiB?: number };
}

/**
 * A node's failure as the services' domain error: the request refused (400), what it
 * names not found (404), a state that forbids it (409), a build step failed; anything
 * else stays a NodeCommandError, which the API reports as a 500.
 */
export function domainError(f: NodeFailure): Error {
  switch (f.code) {
    case 'INVALID_SPEC':
      return new InvalidRequestError(f.message);
    case 'SANDBOX_NOT_FOUND':
    case 'CHECKPOINT_NOT_FOUND':
      return new NotFoundError(f.message);
    case 'INVALID_STATE':
      return new InvalidStateError(f.message);
    case 'RESOURCE_BUSY':
      return new ConflictError(f.message);
    case 'BUILD_STEP_FAILED': {
      const d = f.details ?? {};
      return new BuildStepFailedError(
        f.message,
        typeof d.step === 'string' ? d.step : 'finalize',
        Array.isArray(d.layers) ? d.layers.filter((l): l is string => typeof l === 'string') : [],
      );
    }
    default:
      return new NodeCommandError(f);
  }
}

/**
 * Gets a node the layers and checkpoints it answered MISSING_ARTEFACT for ('build': no node
 * holds the layers, it may build them).
 */
export interface ArtefactSupplier {
  supply(target: NodeClient, failure: NodeFailure): Promise<'fetched' | 'build'>;
  /** Drops the server's copy of a checkpoint (its snapshot is deleted). */
  forgetCheckpoint(name: string): Promise<void>;
}

/**
 * The commands tried again after what they lacked was supplied: twice at most (a create
 * from a checkpoint learns the layers it lacks only once it has the checkpoint).
 */
const SUPPLY_ROUNDS = 2;
const NEEDS_ARTEFACTS = new Set<NodeCommandKind>([
  'sandbox.create',
  'sandbox.claim',
  'sandbox.resume',
  'template.build',
]);

/**
 * What the services ask of a node, as methods: each one a command of the contract sent
 * over the node's link, its failure turned into a domain error.
 */
export class NodeClient {
  constructor(
    readonly link: NodeLink,
    /** Where layers and checkpoints come from when this node lacks some (a cluster's server). */
    private readonly artefacts: () => ArtefactSupplier | undefined = () => undefined,
  ) {}

  get id(): string {
    return this.link.id;
  }

  private async call<K extends NodeCommandKind>(
    kind: K,
    payload: CommandPayload<K>,
    options: { progress?: (line: BuildLogLine) => void; signal?: AbortSignal; supplied?: number } = {},
  ): Promise<CommandResult<K>> {
    const command = { id: randomUUID(), kind, issuedAt: new Date().toISOString(), payload } as NodeCommand<K>;
    const cancel = () =>
      void this.link
        .send({
          id: randomUUID(),
          kind: 'command.cancel',
          issuedAt: new Date().toISOString(),
          payload: { commandId: command.id },
        })
        .catch(() => {});
    options.signal?.addEventListener('abort', cancel, { once: true });
    try {
      const outcome = await this.link.send(command as NodeCommand, options.progress);
      const supplier = this.artefacts();
      if (!outcome.ok && outcome.error.code === 'MISSING_ARTEFACT' && supplier && NEEDS_ARTEFACTS.has(kind)) {
        const rounds = options.supplied ?? 0;
        if (rounds >= SUPPLY_ROUNDS) throw domainError(outcome.error);
        const how = await supplier.supply(this, outcome.error);
        const again = how === 'build' ? { ...payload, buildLayers: true } : payload;
        return await this.call(kind, again, { ...options, supplied: rounds + 1 });
      }
      if (!outcome.ok) throw domainError(outcome.error);
      return outcome.data as CommandResult<K>;
    } finally {
      options.signal?.removeEventListener('abort', cancel);
    }
  }

  /** Template names this node can run (its recipes). */
  async templates(): Promise<string[]> {
    return (await this.link.snapshot()).artefacts.recipes;
  }

  create(r: NodeSandboxRequest): Promise<NodeSandbox> {
    return this.call('sandbox.create', {
      sandboxId: r.id,
      template: r.template,
      accessToken: r.accessToken,
      ...(r.envVars ? { envVars: r.envVars } : {}),
      ...(r.network ? { network: r.network } : {}),
      ...(r.fromCheckpoint ? { fromCheckpoint: r.fromCheckpoint } : {}),
      ...(r.volumes?.length ? { volumes: r.volumes } : {}),
      ...(r.size?.vcpus ? { vcpus: r.size.vcpus } : {}),
      ...(r.size?.memoryMiB ? { memoryMiB: r.size.memoryMiB } : {}),
      ...(r.size?.diskMiB ? { diskMiB: r.size.diskMiB } : {}),
    });
  }

  /** Hands a sandbox made ahead of time (the warm pool) to its tenant. */
  claim(
    id: string,
    r: Pick<NodeSandboxRequest, 'accessToken' | 'envVars' | 'network'>,
  ): Promise<NodeSandbox> {
    return this.call('sandbox.claim', {
      sandboxId: id,
      accessToken: r.accessToken,
      ...(r.envVars ? { envVars: r.envVars } : {}),
      ...(r.network ? { network: r.network } : {}),
    });
  }

  /** Kills a sandbox; false if the node does not have it. */
  async kill(id: string): Promise<boolean> {
    return (await this.call('sandbox.kill', { sandboxId: id })).existed;
  }

  async pause(id: string, options: { memory?: boolean } = {}): Promise<void> {
    await this.call('sandbox.pause', { sandboxId: id, ...options });
  }

  async resume(id: string, options: { memory?: boolean } = {}): Promise<void> {
    await this.call('sandbox.resume', { sandboxId: id, ...options });
  }

  async updateNetwork(id: string, policy: NodeNetworkPolicy): Promise<void> {
    await this.call('sandbox.update-network', { sandboxId: id, policy });
  }

  checkpoint(id: string, name: string): Promise<NodeCheckpoint> {
    return this.call('sandbox.checkpoint', { sandboxId: id, name });
  }

  async removeCheckpoint(name: string): Promise<boolean> {
    return (await this.call('checkpoint.remove', { name })).existed;
  }

  async checkpoints(): Promise<string[]> {
    return (await this.link.snapshot()).checkpoints.map((c) => c.name);
  }

  get(id: string): NodeSandbox | undefined {
    return this.link.sandbox(id);
  }

  list(): NodeSandbox[] {
    return this.link.sandboxes();
  }

  endpoint(id: string, port: number): NodeEndpoint | undefined {
    return this.link.endpoint(id, port);
  }

  usage(id: string): Promise<SandboxUsage> {
    return this.call('sandbox.usage', { sandboxId: id });
  }

  async consoleLog(id: string): Promise<string> {
    return (await this.call('sandbox.console-log', { sandboxId: id })).text;
  }

  buildTemplate(
    request: BuildRequest,
    log: (line: BuildLogLine) => void,
    signal?: AbortSignal,
  ): Promise<BuildResultData> {
    return this.call('template.build', request, { progress: log, signal });
  }

  /** Has the node upload these layers of its store to the server's. */
  pushArtefacts(a: { layers: string[]; checkpoints?: string[] }): Promise<CommandResult<'artefact.push'>> {
    return this.call('artefact.push', {
      layers: a.layers,
      ...(a.checkpoints?.length ? { checkpoints: a.checkpoints } : {}),
    });
  }

  /** Has the node download those of these layers and checkpoints it lacks from the server's store. */
  fetchArtefacts(a: { layers: string[]; checkpoints?: string[] }): Promise<CommandResult<'artefact.fetch'>> {
    return this.call('artefact.fetch', {
      layers: a.layers,
      ...(a.checkpoints?.length ? { checkpoints: a.checkpoints } : {}),
    });
  }

  /** Frees the layers no template image still uses of `layers` (a deleted template's). */
  async removeLayers(layers: string[]): Promise<void> {
    await this.call('layers.remove', { layers });
  }

  /**
   * Called when a sandbox ends or fails without being asked to: its process died, or the
   * node ended it at its deadline (`endReason` `timeout`).
   */
  onSandboxFailed(listener: (id: string, reason: string, endReason?: 'timeout') => void): void {
    this.link.onSandbox((s) => {
      if (s.state === 'error') listener(s.id, s.error ?? 'the sandbox failed');
      else if (s.state === 'stopped' && s.endReason)
        listener(s.id, s.error ?? 'the node ended it at its deadline', s.endReason);
    });
  }

  /**
   * Tells the node when the sandbox's time is up, so that it ends it (after `graceSeconds`)
   * even while cut off from this server; `undefined` clears it.
   */
  async setDeadline(
    id: string,
    deadline: Date | undefined,
    options: { graceSeconds: number; onDeadline: 'kill' | 'pause' },
  ): Promise<void> {
    await this.call('sandbox.set-deadline', {
      sandboxId: id,
      deadline: deadline?.toISOString() ?? null,
      graceSeconds: options.graceSeconds,
      onDeadline: options.onDeadline,
    });
  }
}
