import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  type ListQuery,
  MAX_TIMEOUT_S,
  type NetworkUpdateBody,
  type NewSandbox,
  type Sandbox,
  type SandboxDetail,
  type SandboxLogEntry,
  type SandboxMetric,
} from '../api/e2b/schemas.js';
import type { Database } from '../db/database.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import type { NodeClient } from '../nodes/node-client.js';
import type { Nodes } from '../nodes/nodes.js';
import type { ServerReplica } from '../replicas/server-replica.js';
import { consoleLogEntries, type LogQuery } from './console-log.js';
import { EndTimes, endsNever } from './end-times.js';
import { NotFoundError } from './errors.js';
import { type LiveSandbox, LiveSandboxes, type SandboxLimits, TYPICAL_MEMORY_MIB } from './live-sandboxes.js';
import { egressPolicy, updatedNetwork } from './network-policy.js';
import { NodeReconciliation } from './node-reconciliation.js';
import { ReplicaSync } from './replica-sync.js';
import { type CreateFrom, SandboxCreation } from './sandbox-creation.js';
import { listSandboxes, sandboxDetail, sandboxOf } from './sandbox-list.js';
import { SandboxMetrics } from './sandbox-metrics.js';
import { type SandboxRow, SandboxRows } from './sandbox-rows.js';
import { type EndReason, type LiveState, transition } from './sandbox-states.js';
import type { TeamQuotas } from './team-quotas.js';
import type { Caller } from './team-service.js';
import type { TemplateCatalog } from './template-catalog.js';
import { METERING_INTERVAL_S, UsageMeter } from './usage-meter.js';
import type { VolumeService } from './volume-service.js';
import { WarmPool } from './warm-pool.js';

export interface SandboxServiceOptions {
  db: Database;
  nodes: Nodes;
  logger: Logger;
  metrics: ServerMetrics;
  limits: SandboxLimits;
  /** The teams' quotas, checked on creates and timeouts. */
  quotas: TeamQuotas;
  /** Base domain of sandbox traffic (`{port}-{id}.{domain}`), if host routing is on. */
  domain?: string;
  /** Volumes that creates' `volumeMounts` name (none: a create that names one is refused). */
  volumes?: VolumeService;
  /** How often to sample running sandboxes' CPU, memory and disk. */
  metricsIntervalMs?: number;
  /** Seconds between usage records (default a minute). */
  meteringIntervalS?: number;
  /** Sandboxes kept ready ahead of creates, per template (`aiva up --warm-pool base=4`). */
  warmPool?: Record<string, number>;
  /** What a create's template name means (aiva's own, the team's builds, public ones). */
  templates: TemplateCatalog;
  /** This server among replicas sharing the database: their sandboxes are followed, and only the leader expires sandboxes. */
  replica?: ServerReplica;
}

/** How long a connect keeps a sandbox alive when it does not say (E2B's default). */
const CONNECT_TIMEOUT_S = 300;
/** How long a sandbox woken by traffic runs at least (E2B's default timeout). */
const AUTO_RESUME_S = 300;
/** What a refresh keeps a sandbox alive for, at least and by default (E2B's 15 s). */
const REFRESH_MIN_S = 15;

/**
 * Sandboxes as the API sees them: rows in the database (history included), a live index
 * in memory for lifetimes and the proxy, and the node that runs them. Enforces each
 * sandbox's end time (`SandboxExpiry`), team isolation and capacity; samples resource use
 * (`SandboxMetrics`). State changes follow `sandbox-states.ts`.
 */
export class SandboxService extends EventEmitter<{ ended: [id: string] }> {
  private readonly live: LiveSandboxes;
  private readonly endTimes: EndTimes;
  private readonly usage: SandboxMetrics;
  private readonly meter: UsageMeter;
  private readonly resuming = new Map<string, Promise<void>>();
  private readonly reconciliation: NodeReconciliation;
  private pool: WarmPool | undefined;
  private sync: ReplicaSync | undefined;
  private readonly rows: SandboxRows;
  private readonly nodes: Nodes;
  private readonly log: Logger;
  private readonly creation: SandboxCreation;

  constructor(readonly options: SandboxServiceOptions) {
    super();
    this.rows = new SandboxRows(options.db, options.metrics.lifetimes);
    this.nodes = options.nodes;
    this.log = options.logger;
    this.live = new LiveSandboxes(options.limits, options.metrics.sandboxes);
    this.endTimes = new EndTimes(
      () => this.live.values(),
      { pause: (s) => this.pauseLive(s, s.autoPauseMemory), end: (id) => this.end(id, 'timeout') },
      (id) => this.nodeOfSandbox(id),
      this.log,
    );
    this.creation = new SandboxCreation({
      ...options,
      live: this.live,
      rows: this.rows,
      pool: () => this.pool,
    });
    this.reconciliation = new NodeReconciliation(this.live, this.rows, this.log, this.endedElsewhere);
    this.usage = new SandboxMetrics(
      (id) => this.nodeOfSandbox(id),
      () => [...this.live.values()].filter((s) => s.state === 'running').map((s) => s.id),
      options.metricsIntervalMs,
    );
    this.meter = new UsageMeter(
      options.db,
      {
        live: () => this.live.values(),
        samples: (id, start, end) => this.usage.stored(id, start, end),
      },
      {
        vcpuSeconds: options.metrics.usageVcpuSeconds,
        memoryGibSeconds: options.metrics.usageMemoryGibSeconds,
        egressBytes: options.metrics.usageEgressBytes,
      },
      this.log.child({ part: 'metering' }),
      (options.meteringIntervalS ?? METERING_INTERVAL_S) * 1000,
    );
  }

  /**
   * Reconciles the database with what the node runs (after a restart either may hold
   * sandboxes the other lost), then starts enforcing end times and sampling metrics.
   */
  async start(): Promise<void> {
    // A remote node's stored view may be behind: its sandboxes are served as their rows say
    // until it reports, and reconciled then (`reconcileNode`).
    for (const node of this.nodes.all()) {
      if (node.link.fresh) await this.reconciliation.reconcile(node);
      else await this.reconciliation.serveFromRows(node.id);
    }
    this.nodes.onSandboxFailed((id, reason, endReason) => void this.onNodeFailure(id, reason, endReason));
    const { replica } = this.options;
    if (replica) {
      this.reconciliation.othersCreate = true;
      this.sync = new ReplicaSync(this.options.db, this.live, this.nodes, this.endedElsewhere, this.log);
      this.sync.follow(replica);
      await this.sync.resync();
    }
    this.endTimes.start(replica);
    this.usage.start();
    this.meter.start(replica);
    this.live.updateGauge();
    // The warm pool is a one-box feature: it keeps sandboxes ready on the first node.
    const poolNode = this.nodes.first;
    if (poolNode && this.options.warmPool && Object.values(this.options.warmPool).some((n) => n > 0)) {
      // Started once the node's leftovers are dealt with: pooled sandboxes have no rows.
      const templates = this.options.templates;
      this.pool = new WarmPool(
        poolNode,
        this.options.warmPool,
        (ref) => templates.resolveForOperator(ref),
        () => this.live.hasRoom(TYPICAL_MEMORY_MIB, this.pool?.size ?? 0),
        this.log.child({ part: 'warm-pool' }),
      );
      templates.onChange((id) => this.pool?.changed(id) ?? Promise.resolve());
      this.pool.start();
    }
  }

  /** Stops the timers; with `killSandboxes`, also kills every live sandbox. */
  async stop(options: { killSandboxes: boolean }): Promise<void> {
    this.endTimes.stop();
    this.sync?.stop();
    this.usage.stop();
    await this.pool?.close();
    if (options.killSandboxes) {
      // A sandbox without an end (an environment's) is shelved instead: its disk is kept
      // and it comes back when the environment is started again.
      await Promise.allSettled(
        [...this.live.values()].map((s) =>
          endsNever(s.endAt) && s.state !== 'creating'
            ? s.state === 'running'
              ? this.pauseLive(s, false)
              : Promise.resolve()
            : this.end(s.id, 'shutdown'),
        ),
      );
    }
    await this.meter.stop();
  }

  /** A live sandbox by id, whatever its team (for the proxy). */
  liveSandbox(id: string): LiveSandbox | undefined {
    return this.live.get(id);
  }

  /** How many sandboxes a team may run at once: its quota, else the server's default. */
  async teamLimit(teamId: string): Promise<number> {
    const quota = await this.options.quotas.quota(teamId);
    return quota?.maxSandboxes ?? this.options.limits.maxSandboxesPerTeam;
  }

  /** Ends every live sandbox on node `nodeId` (lost past its grace period); see NodeReconciliation. */
  endAllOn(nodeId: string, why: string): Promise<number> {
    return this.reconciliation.endAllOn(nodeId, why);
  }

  /** Reconciles the rows of the sandboxes on node `nodeId` with what it now reports running. */
  reconcileNode(nodeId: string): Promise<void> {
    return this.reconciliation.reconcile(this.nodes.of(nodeId));
  }

  /** The node a live sandbox runs on (none: every command fails, for one that is not live). */
  nodeOfSandbox(id: string): NodeClient {
    const live = this.live.get(id);
    return this.nodes.of(live?.nodeId ?? '');
  }

  /** Every sandbox that has not ended (creating ones included). */
  liveSandboxes(): Iterable<LiveSandbox> {
    return this.live.values();
  }

  /**
   * Creates a sandbox from `body.templateID`, or from a snapshot (`from.snapshot`);
   * see `SandboxCreation`.
   */
  create(caller: Caller, body: NewSandbox, defaultTimeoutS: number, from: CreateFrom = {}): Promise<Sandbox> {
    return this.creation.create(caller, body, defaultTimeoutS, from);
  }

  /** The team's running or paused sandbox `id` as stored (NotFoundError otherwise). */
  row(caller: Caller, id: string): Promise<SandboxRow> {
    return this.rows.visible(caller.teamId, id);
  }

  /** The team's live sandbox `id`, its row checked first (NotFoundError otherwise). */
  private async liveOf(caller: Caller, id: string): Promise<{ row: SandboxRow; live: LiveSandbox }> {
    const row = await this.row(caller, id);
    const live = this.live.get(id);
    if (!live) throw new NotFoundError(`sandbox ${id} not found`);
    return { row, live };
  }

  async get(caller: Caller, id: string): Promise<SandboxDetail> {
    const detail = sandboxDetail(await this.row(caller, id), this.options.domain);
    const mounts = (await this.options.volumes?.mountsOf([id]))?.get(id);
    return mounts ? { ...detail, volumeMounts: mounts } : detail;
  }

  /** The team's sandboxes, filtered, ordered by start time, one page at a time, with their volumes. */
  /** `everyTeam`: every team's sandboxes (the operator's view; the caller is checked by the route). */
  async list(caller: Caller, q: ListQuery, everyTeam = false): ReturnType<typeof listSandboxes> {
    const page = await listSandboxes(this.options.db, everyTeam ? undefined : caller.teamId, q);
    const mounts = await this.options.volumes?.mountsOf(page.items.map((s) => s.sandboxID));
    if (!mounts?.size) return page;
    return { ...page, items: page.items.map((s) => ({ ...s, volumeMounts: mounts.get(s.sandboxID) ?? [] })) };
  }

  /** Kills a sandbox of the caller's team; false if there is none with that id. */
  async kill(caller: Caller, id: string): Promise<boolean> {
    const live = this.live.get(id);
    if (!live || live.teamId !== caller.teamId || live.state === 'creating') return false;
    await this.end(id, 'killed');
    return true;
  }

  /**
   * Ends a live sandbox: closes its row first (so that no listing shows it any more),
   * resets its open streams, then kills it on the node.
   */
  private async end(id: string, reason: EndReason): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    this.forget(id);
    await this.rows.markEnded(id, live.state, reason);
    this.emit('ended', id);
    this.log.info({ sandbox: id, reason }, 'sandbox ended');
    const killed = this.nodes.of(live.nodeId).kill(id);
    // An unreachable node gets the kill when it is back: the caller does not wait for that.
    if (this.nodes.stateOf(live.nodeId) === 'unreachable') killed.catch(() => {});
    else await killed;
  }

  /** Takes an ended sandbox out of the live index and the samples. */
  /** A sandbox that ended without this service ending it (its node, another replica). */
  private readonly endedElsewhere = (id: string): void => {
    this.forget(id);
    this.emit('ended', id);
  };

  private forget(id: string): void {
    const live = this.live.get(id);
    if (live) this.meter.close(id, live.state, true);
    this.live.remove(id);
    this.usage.forget(id);
    this.live.updateGauge();
  }

  /** Moves a live sandbox to `to` (as the transition table allows), in memory, then in its row. */
  private async moveLive(live: LiveSandbox, to: LiveState): Promise<void> {
    const from = live.state;
    live.state = transition(live.id, live.state, to);
    this.meter.close(live.id, from);
    await this.rows.updateLive(live.id, { state: to });
    this.live.updateGauge();
  }

  /** Replaces the sandbox's egress policy, live; fields left out are cleared (as E2B does). */
  async updateNetwork(caller: Caller, id: string, body: NetworkUpdateBody): Promise<void> {
    const row = await this.row(caller, id);
    await this.nodes.of(row.nodeId).updateNetwork(id, egressPolicy(body.allow_internet_access, body));
    await this.rows.updateLive(id, {
      allowInternetAccess: body.allow_internet_access ?? null,
      network: updatedNetwork(row.network, body),
    });
  }

  /**
   * Resumes a paused sandbox made with `autoResume` because traffic arrived for it (the
   * proxy asks); it then runs at least AUTO_RESUME_S seconds. Concurrent requests share
   * one resume. False if the sandbox is not one to wake.
   */
  async wake(id: string): Promise<boolean> {
    const live = this.live.get(id);
    if (live?.state !== 'paused' || !live.autoResume) return false;
    // Paused without memory: resumed only when asked to (E2B's auto-resume refuses it).
    if (this.nodeOfSandbox(id).get(id)?.withoutMemory) return false;
    try {
      await this.resume(live);
    } catch (e) {
      this.log.error({ sandbox: id, err: e }, 'resuming a sandbox for traffic failed');
      return false;
    }
    live.endAt = Math.max(live.endAt, Date.now() + AUTO_RESUME_S * 1000);
    await this.rows.updateLive(id, { endAt: new Date(live.endAt) });
    this.log.info({ sandbox: id }, 'sandbox resumed by traffic');
    return true;
  }

  /**
   * Resumes a paused sandbox (`memory: false`: booted afresh from its disk whatever was
   * kept); concurrent callers (the proxy's wakes, connects) share one resume.
   */
  private resume(live: LiveSandbox, memory?: boolean): Promise<void> {
    let resuming = this.resuming.get(live.id);
    if (!resuming) {
      resuming = (async () => {
        await this.nodeOfSandbox(live.id).resume(live.id, { memory });
        await this.moveLive(live, 'running');
      })().finally(() => this.resuming.delete(live.id));
      this.resuming.set(live.id, resuming);
    }
    return resuming;
  }

  /** Sets the end time to now + `timeoutS`, earlier or later than before (not past the team's max lifetime). */
  async setTimeout(caller: Caller, id: string, timeoutS: number): Promise<void> {
    await this.row(caller, id);
    this.options.quotas.timeoutFor(await this.options.quotas.quota(caller.teamId), timeoutS, timeoutS);
    const endAt = new Date(Date.now() + timeoutS * 1000);
    await this.rows.updateLive(id, { endAt });
    const live = this.live.get(id);
    if (live) live.endAt = endAt.getTime();
  }

  /**
   * Keeps a running sandbox alive `durationS` more seconds from now (E2B's refresh): at
   * least 15, at most a day; its end time never moves earlier. A paused sandbox is not
   * found, as in E2B (a paused sandbox is no running one to keep alive).
   */
  async refresh(caller: Caller, id: string, durationS?: number): Promise<void> {
    const { live } = await this.liveOf(caller, id);
    if (live.state !== 'running')
      throw new NotFoundError(`sandbox ${id} is paused: connect to it to resume it first`);
    const s = Math.min(MAX_TIMEOUT_S, Math.max(REFRESH_MIN_S, durationS ?? REFRESH_MIN_S));
    const wanted = Date.now() + s * 1000;
    if (wanted <= live.endAt) return;
    live.endAt = wanted;
    await this.rows.updateLive(id, { endAt: new Date(wanted) });
  }

  /**
   * Connects to a sandbox: a running one keeps running (its end time only ever moves
   * later here), a paused one is resumed (201); `memory: false` (the SDK's `onResume:
   * 'reboot'`) boots a paused one afresh from its disk, its memory dropped.
   */
  async connect(
    caller: Caller,
    id: string,
    asked: number | undefined,
    memory?: boolean,
  ): Promise<{ resumed: boolean; sandbox: Sandbox }> {
    const { row, live } = await this.liveOf(caller, id);
    const quota = await this.options.quotas.quota(caller.teamId);
    const timeoutS = this.options.quotas.timeoutFor(quota, asked, CONNECT_TIMEOUT_S);
    const resumed = live.state === 'paused';
    if (resumed) await this.resume(live, memory);
    const wanted = Date.now() + timeoutS * 1000;
    // A sandbox without an end keeps having none.
    if (!endsNever(live.endAt) && (resumed || wanted > live.endAt)) {
      live.endAt = resumed ? wanted : Math.max(wanted, live.endAt);
      await this.rows.updateLive(id, { endAt: new Date(live.endAt) });
    }
    return { resumed, sandbox: sandboxOf(row, this.options.domain) };
  }

  /**
   * Pauses the team's running sandbox (InvalidStateError if it is paused already);
   * `memory: false` keeps its disk only (its processes end; a resume boots it afresh).
   */
  async pause(caller: Caller, id: string, memory?: boolean): Promise<void> {
    const { live } = await this.liveOf(caller, id);
    await this.pauseLive(live, memory);
  }

  /**
   * Brings the team's kept sandbox back if it is paused (`memory: false`: booted afresh
   * from its disk), its end time untouched; its state after.
   */
  async resumeKept(caller: Caller, id: string, memory?: boolean): Promise<LiveState> {
    const { live } = await this.liveOf(caller, id);
    if (live.state === 'paused') await this.resume(live, memory);
    return live.state;
  }

  /** The live state of a sandbox (undefined: it has ended, or never was). */
  liveState(id: string): LiveState | undefined {
    return this.live.get(id)?.state;
  }

  /** Samples of the sandbox's resource use between `start` and `end` (unix seconds). */
  async metrics(caller: Caller, id: string, start?: number, end?: number): Promise<SandboxMetric[]> {
    await this.row(caller, id);
    return this.usage.between(id, this.live.get(id)?.state === 'running', start, end);
  }

  /**
   * The newest sample of each of the team's sandboxes named in `ids` (E2B's batch metrics);
   * ids of no sandbox of the team, or without samples, are left out.
   */
  async latestMetrics(caller: Caller, ids: string[]): Promise<Record<string, SandboxMetric>> {
    return this.usage.latestOf(ids, (id) => {
      const live = this.live.get(id);
      return live?.teamId === caller.teamId && live.state !== 'creating' ? live.state : undefined;
    });
  }

  /** The sandbox's console output as E2B's log entries, filtered and paged as `q` asks. */
  async logs(caller: Caller, id: string, q: LogQuery): Promise<SandboxLogEntry[]> {
    const row = await this.row(caller, id);
    return consoleLogEntries(await this.nodes.of(row.nodeId).consoleLog(id), row.startedAt, q);
  }

  /** Pauses a live sandbox (on request, or at its timeout with autoPause); its open streams are reset. */
  private async pauseLive(s: LiveSandbox, memory?: boolean): Promise<void> {
    transition(s.id, s.state, 'paused');
    await this.nodeOfSandbox(s.id).pause(s.id, { memory });
    await this.moveLive(s, 'paused');
    this.emit('ended', s.id);
  }

  /** A sandbox its node ended without being asked: it failed, or (`endReason`) its node's deadline passed. */
  private async onNodeFailure(id: string, reason: string, endReason?: 'timeout'): Promise<void> {
    const live = this.live.get(id);
    if (!live) return;
    this.log.warn({ sandbox: id, reason }, 'sandbox failed on its node');
    this.forget(id);
    this.emit('ended', id);
    await this.rows.markEnded(id, live.state, endReason ?? 'failed', reason);
    await this.nodes
      .of(live.nodeId)
      .kill(id)
      .catch(() => {});
  }
}
