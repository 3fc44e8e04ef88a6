import {
  type BuildLogLine,
  type CommandPayload,
  type CommandResult,
  commandProblem,
  type NodeCommand,
  NodeCommandError,
  type NodeCommandKind,
  type NodeCommandOutcome,
  type NodeSandbox,
  type TemplateDefinitionData,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { BuildBase, BuildSpec } from '../build/build-types.js';
import { envdMetrics } from '../envd/envd-http.js';
import { MissingArtefactError } from '../image/image-store.js';
import type { LocalNode } from '../local-node.js';
import { discardSnapshotsOf } from '../runtime/qemu/vm-snapshot.js';
import { SandboxManager } from '../sandbox/sandbox-manager.js';
import type { SandboxInfo } from '../sandbox/sandbox-records.js';
import { SandboxNotFoundError } from '../sandbox/sandbox-records.js';
import { failureOf } from './node-failures.js';
import { SandboxDeadlines } from './sandbox-deadlines.js';

// A node's side of the server ↔ node contract: runs the commands a server gives it on
// this host's LocalNode and answers each with its outcome, whether the server is in this
// process (`aiva up`) or on another host (`aiva node join`).

export interface NodeExecutorOptions {
  /**
   * Where the uploaded files of a build (a COPY step's, an image archive) are on this
   * host, by hash; `team` is whose they are. A remote node fetches them first.
   */
  buildFiles(team: string, hashes: string[]): Promise<(hash: string) => string>;
  /**
   * Moves layers and checkpoints between this node's stores and the server's (a node
   * agent's). Without it (`aiva up`'s node, which shares the server's host) `artefact.*`
   * are unsupported, and a recipe layer this node lacks is built here.
   */
  artefacts?: {
    push(p: CommandPayload<'artefact.push'>, signal: AbortSignal): Promise<CommandResult<'artefact.push'>>;
    fetch(p: CommandPayload<'artefact.fetch'>, signal: AbortSignal): Promise<CommandResult<'artefact.fetch'>>;
  };
  log?: Logger;
  /**
   * Where the node keeps its sandboxes' deadlines across its own restarts (a node agent's;
   * `aiva up`'s server expires its node's sandboxes itself).
   */
  deadlinesFile?: string;
}

/** What a command may hear as it runs: a build's log lines. */
export interface CommandHooks {
  progress?(line: BuildLogLine): void;
}

/** A sandbox as the contract tells it: the node's paused states collapse into one. */
export function contractSandbox(s: SandboxInfo): NodeSandbox {
  return {
    id: s.id,
    // In memory or saved to disk is the node's affair; whether a resume boots it afresh
    // is told apart (`withoutMemory`).
    state: s.state === 'suspended' || s.state === 'shelved' ? 'paused' : s.state,
    ...(s.state === 'shelved' ? { withoutMemory: true } : {}),
    vcpus: s.resources.vcpus,
    memoryMiB: s.resources.memoryMiB,
    diskMiB: s.resources.diskMiB,
    envdVersion: s.envdVersion ?? '0.0.1',
    ...(s.error !== undefined ? { error: s.error } : {}),
  };
}

/** How many answered commands are remembered, so that one delivered again is not run again. */
const REMEMBERED = 2000;

export class NodeExecutor {
  /** Outcomes by command id: running ones (a promise) and the last answered. */
  private readonly outcomes = new Map<string, Promise<NodeCommandOutcome>>();
  private readonly running = new Map<string, AbortController>();

  /** Each sandbox's end time, kept by the node too (`sandbox.set-deadline`). */
  readonly deadlines: SandboxDeadlines;

  constructor(
    readonly node: LocalNode,
    private readonly options: NodeExecutorOptions,
  ) {
    this.deadlines = new SandboxDeadlines({
      expire: async (id, action) => {
        const s = this.sandboxes.get(id);
        if (s.state !== 'running') return;
        options.log?.warn(
          { sandbox: id, action },
          'sandbox past its deadline: the node ends it (reason timeout)',
        );
        if (action === 'pause') await this.sandboxes.pause(id);
        else await this.sandboxes.kill(id);
      },
      onError: (id, e) =>
        options.log?.error({ sandbox: id, err: e.message }, 'ending a sandbox at its deadline failed'),
      ...(options.deadlinesFile ? { file: options.deadlinesFile } : {}),
    });
    const kept = this.deadlines.restore((id) => {
      try {
        return this.sandboxes.get(id).state === 'running';
      } catch {
        return false;
      }
    });
    if (kept > 0) options.log?.info({ deadlines: kept }, 'sandbox deadlines kept from before the restart');
    // A sandbox that stops running has no deadline any more (a resume sets a new one).
    this.sandboxes.on('state', (s) => {
      if (s.state !== 'running' && s.state !== 'creating') this.deadlines.clear(s.id);
    });
  }

  /**
   * Runs `command` once, however often it is given: the same id gets the outcome of the
   * first run (waiting for it while it runs). Never rejects: a failure is an outcome.
   */
  execute(command: NodeCommand, hooks: CommandHooks = {}): Promise<NodeCommandOutcome> {
    const known = this.outcomes.get(command.id);
    if (known) return known;
    const outcome = this.run(command, hooks);
    this.outcomes.set(command.id, outcome);
    if (this.outcomes.size > REMEMBERED) {
      const oldest = this.outcomes.keys().next().value;
      if (oldest !== undefined) this.outcomes.delete(oldest);
    }
    return outcome;
  }

  private async run(command: NodeCommand, hooks: CommandHooks): Promise<NodeCommandOutcome> {
    const problem = commandProblem(command);
    if (problem) {
      const unknown = problem.startsWith('unknown command kind');
      return {
        commandId: command.id,
        ok: false,
        error: { code: unknown ? 'UNSUPPORTED_COMMAND' : 'INVALID_SPEC', message: problem },
      };
    }
    const controller = new AbortController();
    this.running.set(command.id, controller);
    try {
      const data = await this.dispatch(command, hooks, controller.signal);
      return { commandId: command.id, ok: true, data };
    } catch (e) {
      return { commandId: command.id, ok: false, error: failureOf(e) };
    } finally {
      this.running.delete(command.id);
    }
  }

  private dispatch(command: NodeCommand, hooks: CommandHooks, signal: AbortSignal): Promise<unknown> {
    const handler = this.handlers[command.kind] as (
      payload: unknown,
      hooks: CommandHooks,
      signal: AbortSignal,
    ) => Promise<unknown>;
    return handler(command.payload, hooks, signal);
  }

  /** The sandbox as the contract tells it, if the node has it. */
  sandbox(id: string): NodeSandbox | undefined {
    try {
      return contractSandbox(this.sandboxes.get(id));
    } catch (e) {
      if (e instanceof SandboxNotFoundError) return undefined;
      throw e;
    }
  }

  list(): NodeSandbox[] {
    return this.sandboxes.list().map(contractSandbox);
  }

  /** The address at which this host reaches a running sandbox's ports. */
  address(id: string): string | undefined {
    try {
      const s = this.sandboxes.get(id);
      return s.state === 'running' ? s.network?.address : undefined;
    } catch (e) {
      if (e instanceof SandboxNotFoundError) return undefined;
      throw e;
    }
  }

  /** Hears every change of a sandbox's state, as the contract tells it (with `endReason` when the node ended it). */
  onSandbox(listener: (sandbox: NodeSandbox) => void): void {
    this.sandboxes.on('state', (s) => listener(this.told(s)));
  }

  private told(s: SandboxInfo): NodeSandbox {
    const c = contractSandbox(s);
    return (s.state === 'stopped' || s.state === 'stopping') && this.deadlines.endedByDeadline(s.id)
      ? { ...c, endReason: 'timeout' }
      : c;
  }

  /**
   * A node agent asked not to build (`buildLayers` not true) answers MISSING_ARTEFACT for
   * the layers of `template` it lacks — a recipe's too — so that the server can send them.
   */
  private async layersHere(template: string | TemplateDefinitionData, buildLayers: boolean | undefined) {
    if (!this.options.artefacts || buildLayers) return;
    const { layers, buildable } = await this.node.images.missingLayers(template);
    if (layers.length > 0)
      throw new MissingArtefactError(
        `this node lacks layer${layers.length > 1 ? 's' : ''} ${layers.map((h) => h.slice(0, 12)).join(', ')} of ${typeof template === 'string' ? template : template.name}`,
        layers,
        buildable,
      );
  }

  /**
   * A node agent answers MISSING_ARTEFACT for a checkpoint it lacks, then for the layers of
   * its template's image if it lacks that (`template`, the definition the server sends,
   * says which), and assembles the image from them.
   */
  private async checkpointHere(
    name: string,
    template: string | TemplateDefinitionData,
    buildLayers: boolean | undefined,
  ): Promise<void> {
    if (!this.options.artefacts) return;
    const checkpoint = await this.sandboxes.checkpoints.find(name);
    if (!checkpoint) throw new MissingArtefactError(`this node lacks checkpoint ${name}`, [], false, [name]);
    const images = this.node.images;
    if (await images.templateByHash(checkpoint.template.hash)) return;
    await this.layersHere(template, buildLayers);
    await images.ensureTemplate(template);
  }

  private artefactMover(): NonNullable<NodeExecutorOptions['artefacts']> {
    const a = this.options.artefacts;
    if (!a)
      throw new NodeCommandError({
        code: 'UNSUPPORTED_COMMAND',
        message: "this node shares the server's store: it moves no layers",
      });
    return a;
  }

  private get sandboxes(): SandboxManager {
    return this.node.sandboxes;
  }

  private readonly handlers: {
    [K in NodeCommandKind]: (
      payload: CommandPayload<K>,
      hooks: CommandHooks,
      signal: AbortSignal,
    ) => Promise<CommandResult<K>>;
  } = {
    'sandbox.create': async (p) => {
      if (p.fromCheckpoint) await this.checkpointHere(p.fromCheckpoint, p.template, p.buildLayers);
      else await this.layersHere(p.template, p.buildLayers);
      return contractSandbox(
        await this.sandboxes.create({
          id: p.sandboxId,
          template: p.template,
          envd: { envVars: p.envVars, accessToken: p.accessToken },
          network: p.network,
          fromCheckpoint: p.fromCheckpoint,
          volumes: p.volumes,
          vcpus: p.vcpus,
          memoryMiB: p.memoryMiB,
          diskMiB: p.diskMiB,
        }),
      );
    },
    'sandbox.claim': async (p) => {
      const { network } = p;
      if (network && (network.allowInternetAccess === false || network.allowOut || network.denyOut))
        await this.sandboxes.updateNetwork(p.sandboxId, network);
      return contractSandbox(
        await this.sandboxes.reinit(p.sandboxId, { accessToken: p.accessToken, envVars: p.envVars }),
      );
    },
    'sandbox.kill': async (p) => {
      try {
        await this.sandboxes.kill(p.sandboxId);
        return { existed: true };
      } catch (e) {
        if (e instanceof SandboxNotFoundError) return { existed: false };
        throw e;
      }
    },
    'sandbox.pause': async (p) => {
      await this.sandboxes.pause(p.sandboxId, { memory: p.memory });
      return {};
    },
    'sandbox.resume': async (p) => {
      await this.sandboxes.resume(p.sandboxId, { memory: p.memory });
      return {};
    },
    'sandbox.update-network': async (p) => {
      await this.sandboxes.updateNetwork(p.sandboxId, p.policy);
      return {};
    },
    'sandbox.set-deadline': async (p) => {
      const at = p.deadline === null ? undefined : Date.parse(p.deadline);
      if (Number.isNaN(at))
        throw new NodeCommandError({ code: 'INVALID_SPEC', message: `deadline ${p.deadline} is not a time` });
      this.sandboxes.get(p.sandboxId);
      this.deadlines.set(p.sandboxId, at, (p.graceSeconds ?? 0) * 1000, p.onDeadline ?? 'kill');
      return {};
    },
    'sandbox.checkpoint': async (p) => {
      const c = await this.sandboxes.checkpoint(p.sandboxId, p.name);
      return { name: c.name, memory: c.memory, bytes: c.bytes };
    },
    'sandbox.console-log': async (p) => ({ text: await this.sandboxes.consoleLog(p.sandboxId) }),
    'sandbox.usage': async (p) => {
      const s = this.sandboxes.get(p.sandboxId);
      if (!s.network) throw new SandboxNotFoundError(p.sandboxId);
      const [m, egressBytes] = await Promise.all([
        envdMetrics(s.network.address, s.accessToken),
        this.sandboxes.egressBytes(s.id),
      ]);
      return {
        timestamp: new Date(m.ts * 1000).toISOString(),
        cpuCount: m.cpu_count,
        cpuUsedPct: m.cpu_used_pct,
        memUsed: m.mem_used,
        memTotal: m.mem_total,
        memCache: m.mem_cache ?? 0,
        diskUsed: m.disk_used,
        diskTotal: m.disk_total,
        ...(egressBytes !== undefined ? { egressBytes } : {}),
      };
    },
    'checkpoint.remove': async (p) => ({ existed: await this.sandboxes.removeCheckpoint(p.name) }),
    'template.build': async (p, hooks, signal) => {
      if ('template' in p.base) await this.layersHere(p.base.template, p.buildLayers);
      const hashes = [
        ...p.steps.flatMap((s) => (s.filesHash ? [s.filesHash] : [])),
        ...('archiveHash' in p.base ? [p.base.archiveHash] : []),
      ];
      const file = await this.options.buildFiles(p.filesTeam, hashes);
      const base: BuildBase = 'archiveHash' in p.base ? { archive: file(p.base.archiveHash) } : p.base;
      const spec: BuildSpec = { ...p, base, filesArchive: file };
      const result = await this.node.builder.build(
        spec,
        (e) => hooks.progress?.({ ...e, timestamp: e.timestamp.toISOString() }),
        signal,
      );
      return {
        definition: result.definition,
        context: result.context,
        layers: result.layers,
        cachedSteps: result.cachedSteps,
      };
    },
    'layers.remove': async (p) => {
      const inUse = await SandboxManager.imagesInUse(this.node.images.options.home);
      const removed = await this.node.images.removeLayers(p.layers, { inUse });
      // VM snapshots of the images that went are of disks that are no more.
      if (removed.templates.length > 0)
        await discardSnapshotsOf(this.node.images.paths.snapshots, new Set(removed.templates));
      return {};
    },
    'artefact.push': (p, _hooks, signal) => this.artefactMover().push(p, signal),
    'artefact.fetch': (p, _hooks, signal) => this.artefactMover().fetch(p, signal),
    'command.cancel': async (p) => {
      const c = this.running.get(p.commandId);
      c?.abort(new NodeCommandError({ code: 'ABORTED', message: 'the command was cancelled' }));
      return { cancelled: c !== undefined };
    },
  };
}
