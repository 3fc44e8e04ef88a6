import { newSandboxId } from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { NewSandbox, Sandbox } from '../api/e2b/schemas.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import type { Nodes } from '../nodes/nodes.js';
import { NEVER } from './end-times.js';
import {
  CapacityError,
  ConflictError,
  InvalidRequestError,
  OperationFailedError,
  TeamLimitError,
} from './errors.js';
import { type LiveSandboxes, liveFromRow, TYPICAL_MEMORY_MIB } from './live-sandboxes.js';
import { egressPolicy } from './network-policy.js';
import { placementOf } from './placement-request.js';
import { sandboxOf } from './sandbox-list.js';
import { checkCreateOptions } from './sandbox-options.js';
import { newSandboxRow, type SandboxRows } from './sandbox-rows.js';
import { transition } from './sandbox-states.js';
import { type TeamQuotas, templateSize } from './team-quotas.js';
import type { Caller } from './team-service.js';
import { startsFrom, type TemplateCatalog } from './template-catalog.js';
import type { ResolvedMounts, VolumeService } from './volume-service.js';
import type { WarmPool } from './warm-pool.js';

/** A snapshot a sandbox is created from: the node's checkpoint and what the sandbox shows as its template. */
export interface SnapshotSource {
  checkpoint: string;
  /** The node that made the checkpoint (placement prefers any node that holds it). */
  nodeId: string;
  templateId: string;
  alias: string;
}

export interface SandboxCreationParts {
  nodes: Nodes;
  live: LiveSandboxes;
  rows: SandboxRows;
  quotas: TeamQuotas;
  templates: TemplateCatalog;
  metrics: ServerMetrics;
  logger: Logger;
  domain?: string;
  /** Volumes that `volumeMounts` name. */
  volumes?: VolumeService;
  /** The warm pool, once the service has started one. */
  pool: () => WarmPool | undefined;
}

/** Where a create comes from besides its body: a snapshot, the pool, and whether it has no end. */
export interface CreateFrom {
  usePool?: boolean;
  snapshot?: SnapshotSource;
  /** No end time (a named environment's sandbox): its `endAt` is NEVER; `timeout` is not used. */
  noEnd?: boolean;
  /** Sizes other than the template's (a named environment's); no pooled sandbox stands in. */
  size?: { vcpus?: number; memoryMiB?: number; diskMiB?: number };
}

/**
 * E2B's rules for `autoPauseMemory: false` (a pause at the timeout that keeps the disk
 * only): it needs autoPause, and such a sandbox cannot be woken by traffic.
 */
function checkAutoPauseMemory(body: NewSandbox): void {
  if (body.autoPauseMemory !== false) return;
  if (!body.autoPause)
    throw new InvalidRequestError('autoPauseMemory=false only applies when autoPause is true.');
  if (body.autoResume?.enabled)
    throw new InvalidRequestError(
      'autoPauseMemory=false (filesystem-only auto-pause) cannot be combined with autoResume: a filesystem-only snapshot cannot be auto-resumed by traffic and must be resumed explicitly.',
    );
}

/**
 * A sandbox's creation, from the request to its row marked running: the template or
 * snapshot resolved, the team's quotas, a node placed (or a pooled sandbox taken), the row
 * admitted, the node's create, and everything undone when any of it fails.
 */
export class SandboxCreation {
  private readonly options: Pick<
    SandboxCreationParts,
    'quotas' | 'templates' | 'metrics' | 'domain' | 'volumes'
  >;
  private readonly nodes: Nodes;
  private readonly live: LiveSandboxes;
  private readonly rows: SandboxRows;
  private readonly log: Logger;
  private readonly pool: () => WarmPool | undefined;

  constructor(parts: SandboxCreationParts) {
    this.options = parts;
    this.nodes = parts.nodes;
    this.live = parts.live;
    this.rows = parts.rows;
    this.log = parts.logger;
    this.pool = parts.pool;
  }

  /**
   * Creates a sandbox from `body.templateID`, or from a snapshot (`from.snapshot`, which
   * the caller resolved): then the template is the snapshot's source's, and no pooled
   * sandbox stands in.
   */
  async create(
    caller: Caller,
    body: NewSandbox,
    defaultTimeoutS: number,
    from: CreateFrom = {},
  ): Promise<Sandbox> {
    const { snapshot } = from;
    checkCreateOptions(body);
    const resolved = snapshot ? undefined : await this.options.templates.resolve(caller, body.templateID);
    if (!snapshot && !resolved) {
      const own = [
        ...new Set((await Promise.all(this.nodes.all().map((n) => n.templates().catch(() => [])))).flat()),
      ];
      throw new InvalidRequestError(
        `template "${body.templateID}" does not exist (templates: ${own.join(', ')} and the team's builds)`,
      );
    }
    const template = snapshot?.templateId ?? resolved?.templateId ?? body.templateID;
    const alias = snapshot?.alias ?? resolved?.alias ?? template;
    // A snapshot's node checkpoint names its image; a node that lacks the image assembles it
    // from the template's definition (its current build, which the snapshot's was, unless rebuilt).
    const source = snapshot
      ? await this.options.templates.resolve(caller, snapshot.templateId).catch(() => undefined)
      : undefined;
    const nodeTemplate = resolved?.node ?? source?.node ?? template;
    if (JSON.stringify(body.metadata ?? {}).length > 16 * 1024)
      throw new InvalidRequestError('metadata is larger than 16 KiB');
    const { quotas } = this.options;
    const quota = await quotas.quota(caller.teamId);
    const timeoutS = quotas.timeoutFor(quota, body.timeout, defaultTimeoutS);
    checkAutoPauseMemory(body);
    const policy = egressPolicy(body.allow_internet_access, body.network ?? {});
    // A built template's size is known now; a recipe's once it runs (checked again then).
    // This check refuses early, before a pooled sandbox is taken; the row's admission decides.
    const size = templateSize(resolved?.row);
    await quotas.checkCreate(caller, quota, this.live.countOfTeam(caller.teamId), size);
    // The template's own memory is not known before it starts: count a typical sandbox.
    this.live.checkCapacity(TYPICAL_MEMORY_MIB);
    const volumes = await this.volumeMounts(caller, body);
    const pool = this.pool();
    // A pooled sandbox was made without volumes.
    const pooled =
      from.usePool !== false && resolved && !volumes && !from.size
        ? pool?.take(startsFrom(resolved))
        : undefined;
    const placement = placementOf(resolved, snapshot, body);
    if (volumes) {
      if (placement.node && placement.node !== volumes.nodeId)
        throw new InvalidRequestError(
          `the volumes are on node ${volumes.nodeId}, not on ${placement.node} (aiva.placement.node)`,
        );
      placement.node = volumes.nodeId;
    }
    const node = pooled && pool ? pool.node : await this.nodes.place(placement);
    const id = pooled ?? newSandboxId();
    const owner = { id, teamId: caller.teamId, nodeId: node.id, template, alias };
    const row = newSandboxRow(owner, body, timeoutS, new Date());
    if (from.noEnd) row.endAt = NEVER;
    // Counted before anything is awaited: concurrent creates (a fork's) see each other's.
    const live = liveFromRow({ ...row, memoryMb: TYPICAL_MEMORY_MIB }, 'creating');
    this.live.add(live);
    const started = performance.now();
    try {
      // This create is among the team's live ones now; the others are what it is checked against.
      const others = this.live.countOfTeam(caller.teamId) - 1;
      await quotas.admitCreate(caller, quota, others, size, async (db) => {
        await this.rows.insert(row, db);
        if (volumes) await this.options.volumes?.recordMounts(db, id, volumes.mounts);
      });
      const request = { envVars: body.envVars, accessToken: row.envdAccessToken, network: policy };
      const n = pooled
        ? await node.claim(id, request)
        : await node.create({
            id,
            template: nodeTemplate,
            fromCheckpoint: snapshot?.checkpoint,
            ...(volumes ? { volumes: volumes.mounts } : {}),
            ...(from.size ? { size: from.size } : {}),
            ...request,
          });
      // Past a quota, it goes again (the catch below), and leaves nothing.
      await quotas.checkStarted(caller.teamId, id, n);
      if (resolved?.row) await this.options.templates.spawned(resolved.templateId);
      // The sandbox lives `timeout` seconds from when it is ready, not from when it was asked for.
      const readyAt = new Date();
      const endAt = from.noEnd ? NEVER : new Date(readyAt.getTime() + timeoutS * 1000);
      const ready = {
        state: transition(id, live.state, 'running'),
        cpuCount: n.vcpus,
        memoryMb: n.memoryMiB,
        diskSizeMb: n.diskMiB,
        envdVersion: n.envdVersion,
        startedAt: readyAt,
        endAt,
      };
      await this.rows.updateLive(id, ready);
      Object.assign(live, { state: ready.state, endAt: endAt.getTime(), memoryMb: n.memoryMiB });
      this.live.updateGauge();
      const tookMs = performance.now() - started;
      this.options.metrics.createSeconds.observe(tookMs / 1000);
      this.options.metrics.createLog.record(caller.teamId, tookMs, true);
      this.log.info(
        {
          sandbox: id,
          team: caller.teamId,
          template,
          snapshot: snapshot?.checkpoint,
          pooled: Boolean(pooled),
        },
        'sandbox created',
      );
      return sandboxOf({ ...row, ...ready }, this.options.domain);
    } catch (e) {
      // Its mount rows go with its row (a foreign key that cascades).
      this.live.remove(id);
      await this.rows.remove(id);
      this.live.updateGauge();
      // Whatever the node holds of it goes: a pooled sandbox, or one whose row failed.
      await node.kill(id).catch(() => {});
      // A request the node refuses as given (400), no node that can have what it needs (503),
      // past a quota (429), what another sandbox holds (409: a microVM's volume).
      if (
        e instanceof InvalidRequestError ||
        e instanceof CapacityError ||
        e instanceof TeamLimitError ||
        e instanceof ConflictError
      )
        throw e;
      if (pooled) {
        // The pooled sandbox was no good: make one the ordinary way.
        this.log.warn({ sandbox: id, err: e }, 'a pooled sandbox could not be handed over; creating one');
        return this.create(caller, { ...body, templateID: template }, defaultTimeoutS, {
          ...from,
          usePool: false,
        });
      }
      this.log.error({ sandbox: id, err: e }, 'sandbox create failed');
      this.options.metrics.createLog.record(caller.teamId, performance.now() - started, false);
      throw new OperationFailedError('the sandbox could not start', e);
    }
  }

  /** The create's `volumeMounts`, resolved (undefined when it names none). */
  private async volumeMounts(caller: Caller, body: NewSandbox): Promise<ResolvedMounts | undefined> {
    const requested = body.volumeMounts ?? [];
    if (requested.length === 0) return undefined;
    const { volumes } = this.options;
    if (!volumes) throw new InvalidRequestError('volumeMounts: this server has no volumes');
    return volumes.resolveMounts(caller, requested);
  }
}
