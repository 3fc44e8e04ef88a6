import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { newSandboxId, SandboxSpecError, SandboxStateError } from '@aiva/node';
import { and, asc, desc, eq, gt, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type {
  ListedSandbox,
  ListQuery,
  NetworkUpdateBody,
  NewSandbox,
  Sandbox,
  SandboxDetail,
  SandboxLogEntry,
  SandboxMetric,
} from '../api/e2b/schemas.js';
import { ApiError, badRequest, conflict, notFound } from '../api/errors.js';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import type { NodeNetworkPolicy, SandboxNode, SandboxUsage } from '../nodes/sandbox-node.js';
import { parseConsoleLog } from './console-log.js';
import { keysetPage, parseCursor } from './keyset-page.js';
import type { Caller } from './team-service.js';
import { WarmPool } from './warm-pool.js';

type Row = typeof sandboxes.$inferSelect;

/** A snapshot a sandbox is created from: the node's checkpoint and what the sandbox shows as its template. */
export interface SnapshotSource {
  checkpoint: string;
  templateId: string;
  alias: string;
}

export interface SandboxLimits {
  /** Sandboxes the node takes at most (503 beyond). */
  maxSandboxes: number;
  /** Memory (MiB) all sandboxes may take together (503 beyond). */
  memoryBudgetMiB: number;
  /** Sandboxes one team may run at once (429 beyond). */
  maxSandboxesPerTeam: number;
}

export interface SandboxServiceOptions {
  db: Database;
  node: SandboxNode;
  logger: Logger;
  metrics: ServerMetrics;
  limits: SandboxLimits;
  /** Base domain of sandbox traffic (`{port}-{id}.{domain}`), if host routing is on. */
  domain?: string;
  /** How often to sample running sandboxes' CPU, memory and disk. */
  metricsIntervalMs?: number;
  /** Sandboxes kept ready ahead of creates, per template (`aiva up --warm-pool base=4`). */
  warmPool?: Record<string, number>;
}

/** What the proxy needs to know of a sandbox, kept in memory for every live one. */
export interface LiveSandbox {
  id: string;
  teamId: string;
  state: 'creating' | 'running' | 'paused';
  /** When it expires (ms since the epoch). */
  endAt: number;
  onTimeout: 'kill' | 'pause';
  memoryMb: number;
  allowPublicTraffic: boolean;
  trafficAccessToken?: string;
  /** Resume when traffic arrives for it while paused (E2B's `autoResume`). */
  autoResume: boolean;
}

/** How long a sandbox woken by traffic runs at least (E2B's default timeout). */
const AUTO_RESUME_S = 300;

const METRIC_SAMPLES_KEPT = 720;
const newToken = () => randomBytes(24).toString('hex');

/**
 * Sandboxes as the API sees them: rows in the database (history included), a live index
 * in memory for lifetimes and the proxy, and the node that runs them. Enforces each
 * sandbox's end time (to within a quarter of a second), team isolation and capacity.
 */
export class SandboxService extends EventEmitter<{ ended: [id: string] }> {
  private readonly live = new Map<string, LiveSandbox>();
  private readonly samples = new Map<string, SandboxMetric[]>();
  private ticker: NodeJS.Timeout | undefined;
  private sampler: NodeJS.Timeout | undefined;
  private readonly expiring = new Set<string>();
  private readonly resuming = new Map<string, Promise<void>>();
  private pool: WarmPool | undefined;
  private readonly db: Database;
  private readonly node: SandboxNode;
  private readonly log: Logger;

  constructor(readonly options: SandboxServiceOptions) {
    super();
    this.db = options.db;
    this.node = options.node;
    this.log = options.logger;
  }

  /**
   * Reconciles the database with what the node runs (after a restart either may hold
   * sandboxes the other lost), then starts enforcing end times and sampling metrics.
   */
  async start(): Promise<void> {
    const rows = await this.db
      .select()
      .from(sandboxes)
      .where(
        and(eq(sandboxes.nodeId, this.node.id), inArray(sandboxes.state, ['creating', 'running', 'paused'])),
      );
    const onNode = new Map(this.node.list().map((s) => [s.id, s]));
    for (const row of rows) {
      const n = onNode.get(row.id);
      onNode.delete(row.id);
      if (row.state === 'creating' || !n || (n.state !== 'running' && n.state !== 'paused')) {
        this.log.warn(
          { sandbox: row.id, rowState: row.state, nodeState: n?.state },
          'sandbox did not survive the restart',
        );
        if (n) await this.node.kill(row.id).catch(() => {});
        await this.markEnded(row.id, 'killed', n?.error ?? 'lost when the server restarted');
        continue;
      }
      this.live.set(row.id, this.toLive(row, n.state));
      if (n.state !== row.state) await this.updateLive(row.id, { state: n.state });
    }
    for (const orphan of onNode.values()) {
      this.log.warn({ sandbox: orphan.id }, 'killing a sandbox the database does not know');
      await this.node.kill(orphan.id).catch(() => {});
    }
    this.node.onSandboxFailed((id, reason) => void this.onNodeFailure(id, reason));
    this.ticker = setInterval(() => void this.expire(), 250);
    this.ticker.unref();
    this.sampler = setInterval(() => void this.sample(), this.options.metricsIntervalMs ?? 5000);
    this.sampler.unref();
    this.updateGauges();
    if (this.options.warmPool && Object.values(this.options.warmPool).some((n) => n > 0)) {
      // Started once the node's leftovers are dealt with: pooled sandboxes have no rows.
      this.pool = new WarmPool(
        this.node,
        this.options.warmPool,
        () => this.hasRoom(512, this.pool?.size ?? 0),
        this.log.child({ component: 'warm-pool' }),
      );
      this.pool.start();
    }
  }

  /** Stops the timers; with `killSandboxes`, also kills every live sandbox. */
  async stop(options: { killSandboxes: boolean }): Promise<void> {
    clearInterval(this.ticker);
    clearInterval(this.sampler);
    await this.pool?.close();
    if (options.killSandboxes) {
      await Promise.allSettled([...this.live.keys()].map((id) => this.end(id, 'server shut down')));
    }
  }

  private toLive(row: Row, state: LiveSandbox['state']): LiveSandbox {
    const network = (row.network ?? {}) as { allowPublicTraffic?: boolean };
    return {
      id: row.id,
      teamId: row.teamId,
      state,
      endAt: row.endAt.getTime(),
      onTimeout: row.onTimeout,
      memoryMb: row.memoryMb,
      allowPublicTraffic: network.allowPublicTraffic !== false,
      trafficAccessToken: row.trafficAccessToken ?? undefined,
      autoResume: row.autoResume,
    };
  }

  /** A live sandbox by id, whatever its team (for the proxy). */
  liveSandbox(id: string): LiveSandbox | undefined {
    return this.live.get(id);
  }

  private async templates(): Promise<string[]> {
    return this.node.templates();
  }

  /**
   * Whether the node has room for one more sandbox of `memoryMb`, besides `pooled`
   * sandboxes of the warm pool that the live ones do not count (512 MiB each).
   */
  private hasRoom(memoryMb: number, pooled = 0): boolean {
    const { limits } = this.options;
    const used = [...this.live.values()].reduce((sum, s) => sum + s.memoryMb, 0) + pooled * 512;
    return this.live.size + pooled < limits.maxSandboxes && used + memoryMb <= limits.memoryBudgetMiB;
  }

  private checkCapacity(caller: Caller, memoryMb: number): void {
    const { limits } = this.options;
    const ofTeam = [...this.live.values()].filter((s) => s.teamId === caller.teamId).length;
    if (ofTeam >= limits.maxSandboxesPerTeam) {
      throw new ApiError(
        429,
        `your team already runs ${limits.maxSandboxesPerTeam} sandboxes, the most it may`,
        {
          'retry-after': '1',
        },
      );
    }
    if (!this.hasRoom(memoryMb))
      throw new ApiError(503, 'no capacity for another sandbox on this node right now');
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
    from: { usePool?: boolean; snapshot?: SnapshotSource } = {},
  ): Promise<Sandbox> {
    const { snapshot } = from;
    const template = snapshot?.templateId ?? body.templateID;
    const alias = snapshot?.alias ?? template;
    if (!snapshot && !(await this.templates()).includes(template)) {
      throw badRequest(
        `template "${template}" does not exist (templates: ${(await this.templates()).join(', ')})`,
      );
    }
    const metadata = body.metadata ?? {};
    if (JSON.stringify(metadata).length > 16 * 1024) throw badRequest('metadata is larger than 16 KiB');
    const timeoutS = body.timeout ?? defaultTimeoutS;
    const policy = egressPolicy(body.allow_internet_access, body.network ?? {});
    // The template's own memory is not known before it starts: count a typical sandbox.
    this.checkCapacity(caller, 512);
    const pooled = from.usePool !== false && !snapshot ? this.pool?.take(template) : undefined;
    const id = pooled ?? newSandboxId();
    const allowPublicTraffic = body.network?.allowPublicTraffic !== false;
    const now = new Date();
    const row: typeof sandboxes.$inferInsert = {
      id,
      teamId: caller.teamId,
      templateId: template,
      alias,
      nodeId: this.node.id,
      state: 'creating',
      cpuCount: 0,
      memoryMb: 0,
      diskSizeMb: 0,
      metadata,
      envdVersion: '0.0.1',
      envdAccessToken: newToken(),
      trafficAccessToken: allowPublicTraffic ? null : newToken(),
      allowInternetAccess: body.allow_internet_access ?? null,
      network: body.network ?? null,
      onTimeout: body.autoPause ? 'pause' : 'kill',
      autoResume: body.autoResume?.enabled ?? false,
      startedAt: now,
      endAt: new Date(now.getTime() + timeoutS * 1000),
    };
    const live: LiveSandbox = {
      id,
      teamId: caller.teamId,
      state: 'creating',
      endAt: row.endAt.getTime(),
      onTimeout: row.onTimeout ?? 'kill',
      memoryMb: 512,
      allowPublicTraffic,
      trafficAccessToken: row.trafficAccessToken ?? undefined,
      autoResume: row.autoResume ?? false,
    };
    // Counted before anything is awaited: concurrent creates (a fork's) see each other's.
    this.live.set(id, live);
    const started = performance.now();
    try {
      await this.db.insert(sandboxes).values(row);
      const request = { envVars: body.envVars, accessToken: row.envdAccessToken, network: policy };
      const n = pooled
        ? await this.node.claim(id, request)
        : await this.node.create({ id, template, fromCheckpoint: snapshot?.checkpoint, ...request });
      // The sandbox lives `timeout` seconds from when it is ready, not from when it was asked for.
      const readyAt = new Date();
      const endAt = new Date(readyAt.getTime() + timeoutS * 1000);
      await this.updateLive(id, {
        state: 'running',
        cpuCount: n.vcpus,
        memoryMb: n.memoryMiB,
        diskSizeMb: n.diskMiB,
        envdVersion: n.envdVersion,
        startedAt: readyAt,
        endAt,
      });
      Object.assign(live, { state: 'running', endAt: endAt.getTime(), memoryMb: n.memoryMiB });
      this.options.metrics.createSeconds.observe((performance.now() - started) / 1000);
      this.updateGauges();
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
      return {
        sandboxID: id,
        templateID: template,
        alias,
        clientID: this.node.id,
        envdVersion: n.envdVersion,
        envdAccessToken: row.envdAccessToken,
        trafficAccessToken: row.trafficAccessToken ?? null,
        domain: this.options.domain ?? null,
      };
    } catch (e) {
      this.live.delete(id);
      await this.db.delete(sandboxes).where(eq(sandboxes.id, id));
      this.updateGauges();
      // Whatever the node holds of it goes: a pooled sandbox, or one whose row failed.
      await this.node.kill(id).catch(() => {});
      if (pooled && !(e instanceof SandboxSpecError)) {
        // The pooled sandbox was no good: make one the ordinary way.
        this.log.warn({ sandbox: id, err: e }, 'a pooled sandbox could not be handed over; creating one');
        return this.create(caller, { ...body, templateID: template }, defaultTimeoutS, { usePool: false });
      }
      if (e instanceof SandboxSpecError) throw badRequest(e.message);
      this.log.error({ sandbox: id, err: e }, 'sandbox create failed');
      throw new ApiError(500, `the sandbox could not start: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  /** The team's running or paused sandbox `id` as stored (404 otherwise). */
  async row(caller: Caller, id: string): Promise<Row> {
    const [row] = await this.db
      .select()
      .from(sandboxes)
      .where(and(eq(sandboxes.id, id), eq(sandboxes.teamId, caller.teamId)))
      .limit(1);
    if (!row || (row.state !== 'running' && row.state !== 'paused'))
      throw notFound(`sandbox ${id} not found`);
    return row;
  }

  private listed(row: Row): ListedSandbox {
    return {
      sandboxID: row.id,
      templateID: row.templateId,
      ...(row.alias ? { alias: row.alias } : {}),
      clientID: row.nodeId,
      cpuCount: row.cpuCount,
      memoryMB: row.memoryMb,
      diskSizeMB: row.diskSizeMb,
      startedAt: row.startedAt.toISOString(),
      endAt: row.endAt.toISOString(),
      envdVersion: row.envdVersion,
      state: row.state === 'paused' ? 'paused' : 'running',
      metadata: row.metadata,
    };
  }

  async get(caller: Caller, id: string): Promise<SandboxDetail> {
    const row = await this.row(caller, id);
    return {
      ...this.listed(row),
      envdAccessToken: row.envdAccessToken,
      domain: this.options.domain ?? null,
      allowInternetAccess: row.allowInternetAccess,
      ...(row.network ? { network: row.network } : {}),
      lifecycle: { onTimeout: row.onTimeout, autoResume: row.autoResume },
    };
  }

  /** The team's sandboxes, filtered, ordered by start time, one page at a time. */
  async list(caller: Caller, q: ListQuery): Promise<{ items: ListedSandbox[]; nextToken?: string }> {
    const states = (q.state ?? 'running,paused').split(',').map((s) => s.trim());
    for (const s of states)
      if (s !== 'running' && s !== 'paused') throw badRequest(`state "${s}" is not running or paused`);
    const where: SQL[] = [
      eq(sandboxes.teamId, caller.teamId),
      inArray(sandboxes.state, states as Row['state'][]),
    ];
    if (q.template)
      where.push(or(eq(sandboxes.templateId, q.template), eq(sandboxes.alias, q.template)) as SQL);
    if (q.startedAfter) where.push(gt(sandboxes.startedAt, new Date(q.startedAfter)));
    if (q.metadata)
      where.push(sql`${sandboxes.metadata} @> ${JSON.stringify(parseMetadataFilter(q.metadata))}::jsonb`);
    const order = q.order ?? 'desc';
    if (q.nextToken) {
      const cursor = parseCursor(q.nextToken);
      const at = new Date(cursor.t);
      const after =
        order === 'desc'
          ? or(lt(sandboxes.startedAt, at), and(eq(sandboxes.startedAt, at), lt(sandboxes.id, cursor.id)))
          : or(gt(sandboxes.startedAt, at), and(eq(sandboxes.startedAt, at), gt(sandboxes.id, cursor.id)));
      where.push(after as SQL);
    }
    const limit = q.limit ?? 100;
    const by =
      order === 'desc'
        ? [desc(sandboxes.startedAt), desc(sandboxes.id)]
        : [asc(sandboxes.startedAt), asc(sandboxes.id)];
    const rows = await this.db
      .select()
      .from(sandboxes)
      .where(and(...where))
      .orderBy(...by)
      .limit(limit + 1);
    const { page, nextToken } = keysetPage(rows, limit, (r) => r.startedAt);
    return { items: page.map((r) => this.listed(r)), nextToken };
  }

  /** Kills a sandbox of the caller's team; false if there is none with that id. */
  async kill(caller: Caller, id: string): Promise<boolean> {
    const live = this.live.get(id);
    if (!live || live.teamId !== caller.teamId || live.state === 'creating') return false;
    await this.end(id, 'killed by request');
    return true;
  }

  /**
   * Ends a live sandbox: closes its row first (so that no listing shows it any more),
   * resets its open streams, then kills it on the node.
   */
  private async end(id: string, reason: string): Promise<void> {
    if (!this.live.has(id)) return;
    this.live.delete(id);
    this.samples.delete(id);
    await this.markEnded(id, 'killed', reason === 'killed by request' ? null : reason);
    this.emit('ended', id);
    this.updateGauges();
    this.log.info({ sandbox: id, reason }, 'sandbox ended');
    await this.node.kill(id);
  }

  private async markEnded(id: string, state: 'killed' | 'error', error: string | null): Promise<void> {
    await this.db.update(sandboxes).set({ state, endedAt: new Date(), error }).where(eq(sandboxes.id, id));
  }

  /**
   * Updates the row of a sandbox that has not ended: a write that lands after `end`
   * (a resume that was under way) does not bring the row back.
   */
  private async updateLive(id: string, set: Partial<typeof sandboxes.$inferInsert>): Promise<void> {
    await this.db
      .update(sandboxes)
      .set(set)
      .where(and(eq(sandboxes.id, id), inArray(sandboxes.state, ['creating', 'running', 'paused'])));
  }

  /** Sets the end time to now + `timeoutS`, earlier or later than before. */
  /** Replaces the sandbox's egress policy, live; fields left out are cleared (as E2B does). */
  async updateNetwork(caller: Caller, id: string, body: NetworkUpdateBody): Promise<void> {
    const row = await this.row(caller, id);
    const policy = egressPolicy(body.allow_internet_access, body);
    try {
      await this.node.updateNetwork(id, policy);
    } catch (e) {
      if (e instanceof SandboxSpecError) throw badRequest(e.message);
      if (e instanceof SandboxStateError) throw conflict(e.message);
      throw e;
    }
    const before = (row.network ?? {}) as Record<string, unknown>;
    const { allowOut: _a, denyOut: _d, ...kept } = before;
    await this.db
      .update(sandboxes)
      .set({
        allowInternetAccess: body.allow_internet_access ?? null,
        network: {
          ...kept,
          ...(body.allowOut ? { allowOut: body.allowOut } : {}),
          ...(body.denyOut ? { denyOut: body.denyOut } : {}),
        },
      })
      .where(eq(sandboxes.id, id));
  }

  /**
   * Resumes a paused sandbox made with `autoResume` because traffic arrived for it (the
   * proxy asks); it then runs at least AUTO_RESUME_S seconds. Concurrent requests share
   * one resume. False if the sandbox is not one to wake.
   */
  async wake(id: string): Promise<boolean> {
    const live = this.live.get(id);
    if (live?.state !== 'paused' || !live.autoResume) return false;
    try {
      await this.resume(id, live);
    } catch (e) {
      this.log.error({ sandbox: id, err: e }, 'resuming a sandbox for traffic failed');
      return false;
    }
    live.endAt = Math.max(live.endAt, Date.now() + AUTO_RESUME_S * 1000);
    await this.updateLive(id, { endAt: new Date(live.endAt) });
    this.log.info({ sandbox: id }, 'sandbox resumed by traffic');
    return true;
  }

  /** Resumes a paused sandbox; concurrent callers (the proxy's wakes, connects) share one resume. */
  private resume(id: string, live: LiveSandbox): Promise<void> {
    let resuming = this.resuming.get(id);
    if (!resuming) {
      resuming = (async () => {
        await this.node.resume(id);
        live.state = 'running';
        await this.updateLive(id, { state: 'running' });
        this.updateGauges();
      })().finally(() => this.resuming.delete(id));
      this.resuming.set(id, resuming);
    }
    return resuming;
  }

  async setTimeout(caller: Caller, id: string, timeoutS: number): Promise<void> {
    await this.row(caller, id);
    const endAt = new Date(Date.now() + timeoutS * 1000);
    await this.updateLive(id, { endAt });
    const live = this.live.get(id);
    if (live) live.endAt = endAt.getTime();
  }

  /**
   * Connects to a sandbox: a running one keeps running (its end time only ever moves
   * later here), a paused one is resumed (201).
   */
  async connect(
    caller: Caller,
    id: string,
    timeoutS: number,
  ): Promise<{ resumed: boolean; sandbox: Sandbox }> {
    const row = await this.row(caller, id);
    const live = this.live.get(id);
    if (!live) throw notFound(`sandbox ${id} not found`);
    const resumed = live.state === 'paused';
    if (resumed) await this.resume(id, live);
    const wanted = Date.now() + timeoutS * 1000;
    if (resumed || wanted > live.endAt) {
      live.endAt = resumed ? wanted : Math.max(wanted, live.endAt);
      await this.updateLive(id, { endAt: new Date(live.endAt) });
    }
    this.updateGauges();
    return {
      resumed,
      sandbox: {
        sandboxID: id,
        templateID: row.templateId,
        ...(row.alias ? { alias: row.alias } : {}),
        clientID: row.nodeId,
        envdVersion: row.envdVersion,
        envdAccessToken: row.envdAccessToken,
        trafficAccessToken: row.trafficAccessToken,
        domain: this.options.domain ?? null,
      },
    };
  }

  async pause(caller: Caller, id: string): Promise<void> {
    const row = await this.row(caller, id);
    if (row.state === 'paused') throw conflict(`sandbox ${id} is already paused`);
    const live = this.live.get(id);
    if (!live) throw notFound(`sandbox ${id} not found`);
    try {
      await this.pauseLive(live);
    } catch (e) {
      if (e instanceof SandboxStateError) throw conflict(e.message);
      throw e;
    }
  }

  /** Samples of the sandbox's resource use between `start` and `end` (unix seconds). */
  async metrics(caller: Caller, id: string, start?: number, end?: number): Promise<SandboxMetric[]> {
    await this.row(caller, id);
    if (!this.samples.get(id)?.length && this.live.get(id)?.state === 'running') await this.sampleOne(id);
    return (this.samples.get(id) ?? []).filter(
      (m) =>
        (start === undefined || m.timestampUnix >= start) && (end === undefined || m.timestampUnix <= end),
    );
  }

  async logs(
    caller: Caller,
    id: string,
    q: {
      cursor?: number;
      limit?: number;
      direction?: 'forward' | 'backward';
      level?: string;
      search?: string;
    },
  ): Promise<SandboxLogEntry[]> {
    const row = await this.row(caller, id);
    const order = ['debug', 'info', 'warn', 'error'];
    const minLevel = order.indexOf(q.level ?? 'debug');
    let entries = parseConsoleLog(await this.node.consoleLog(id), row.startedAt).filter(
      (e) =>
        order.indexOf(e.level) >= minLevel &&
        (!q.search || e.message.includes(q.search)) &&
        (q.cursor === undefined ||
          (q.direction === 'backward'
            ? Date.parse(e.timestamp) <= q.cursor
            : Date.parse(e.timestamp) >= q.cursor)),
    );
    if (q.direction === 'backward') entries = entries.reverse();
    return entries.slice(0, q.limit ?? 1000);
  }

  private async sampleOne(id: string): Promise<void> {
    let u: SandboxUsage;
    try {
      u = await this.node.usage(id);
    } catch {
      return;
    }
    const list = this.samples.get(id) ?? [];
    list.push({
      timestamp: u.timestamp.toISOString(),
      timestampUnix: Math.floor(u.timestamp.getTime() / 1000),
      cpuCount: u.cpuCount,
      cpuUsedPct: u.cpuUsedPct,
      memUsed: u.memUsed,
      memTotal: u.memTotal,
      memCache: u.memCache,
      diskUsed: u.diskUsed,
      diskTotal: u.diskTotal,
    });
    if (list.length > METRIC_SAMPLES_KEPT) list.splice(0, list.length - METRIC_SAMPLES_KEPT);
    this.samples.set(id, list);
  }

  private async sample(): Promise<void> {
    await Promise.allSettled(
      [...this.live.values()].filter((s) => s.state === 'running').map((s) => this.sampleOne(s.id)),
    );
  }

  /** Ends (or pauses, with autoPause) the sandboxes whose time is up. */
  private async expire(): Promise<void> {
    const now = Date.now();
    for (const s of this.live.values()) {
      if (s.state === 'creating' || s.endAt > now || this.expiring.has(s.id)) continue;
      if (s.state === 'paused' && s.onTimeout === 'pause') continue;
      this.expiring.add(s.id);
      const act =
        s.onTimeout === 'pause' && s.state === 'running' ? this.pauseLive(s) : this.end(s.id, 'timeout');
      void act
        .catch((e: Error) => this.log.error({ sandbox: s.id, err: e }, 'ending an expired sandbox failed'))
        .finally(() => this.expiring.delete(s.id));
    }
  }

  /** Pauses a live sandbox (on request, or at its timeout with autoPause); its open streams are reset. */
  private async pauseLive(s: LiveSandbox): Promise<void> {
    await this.node.pause(s.id);
    s.state = 'paused';
    await this.updateLive(s.id, { state: 'paused' });
    this.emit('ended', s.id);
    this.updateGauges();
  }

  private async onNodeFailure(id: string, reason: string): Promise<void> {
    if (!this.live.has(id)) return;
    this.log.warn({ sandbox: id, reason }, 'sandbox failed on its node');
    this.live.delete(id);
    this.emit('ended', id);
    await this.markEnded(id, 'error', reason);
    await this.node.kill(id).catch(() => {});
    this.updateGauges();
  }

  private updateGauges(): void {
    const g = this.options.metrics.sandboxes;
    g.reset();
    for (const s of this.live.values()) g.inc({ state: s.state });
  }
}

/**
 * E2B's metadata filter: after normal query decoding, the whole value is URL-decoded
 * once more, split on `&` and `=`, and each key and value URL-decoded.
 */
export function parseMetadataFilter(value: string): Record<string, string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    throw badRequest('metadata filter is not URL-encoded');
  }
  const filter: Record<string, string> = {};
  for (const pair of decoded.split('&')) {
    if (!pair) continue;
    const eqAt = pair.indexOf('=');
    if (eqAt <= 0) throw badRequest(`metadata filter "${pair}" is not key=value`);
    try {
      filter[decodeURIComponent(pair.slice(0, eqAt))] = decodeURIComponent(pair.slice(eqAt + 1));
    } catch {
      throw badRequest(`metadata filter "${pair}" is not URL-encoded`);
    }
  }
  return filter;
}

/**
 * The egress policy a request asks for. E2B's per-host `rules` (header injection) and
 * `egressProxy` are not implemented: asking for them is an error, not silently ignored.
 */
function egressPolicy(
  allowInternetAccess: boolean | undefined,
  network: { allowOut?: string[]; denyOut?: string[] } & Record<string, unknown>,
): NodeNetworkPolicy {
  for (const unsupported of ['rules', 'egressProxy'])
    if (network[unsupported] !== undefined)
      throw badRequest(`network.${unsupported} is not supported by this server`);
  return {
    ...(allowInternetAccess !== undefined ? { allowInternetAccess } : {}),
    ...(network.allowOut ? { allowOut: network.allowOut } : {}),
    ...(network.denyOut ? { denyOut: network.denyOut } : {}),
  };
}
