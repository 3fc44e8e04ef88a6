import { and, eq, gt, inArray, or, sql } from 'drizzle-orm';
import type { Counter } from 'prom-client';
import type { Database } from '../db/database.js';
import { sandboxes, teams } from '../db/schema.js';
import { InvalidRequestError, type QuotaKind, TeamLimitError } from './errors.js';
import type { Caller } from './team-service.js';

/** A team's quotas as the API shows and sets them; null: none beyond the server's default. */
export interface TeamQuota {
  maxSandboxes: number | null;
  maxVcpus: number | null;
  maxMemoryMiB: number | null;
  maxDiskMiB: number | null;
  createsPerMinute: number | null;
  requestsPerSecond: number | null;
  maxLifetimeS: number | null;
}

export const QUOTA_FIELDS = [
  'maxSandboxes',
  'maxVcpus',
  'maxMemoryMiB',
  'maxDiskMiB',
  'createsPerMinute',
  'requestsPerSecond',
  'maxLifetimeS',
] as const satisfies readonly (keyof TeamQuota)[];

type TeamRow = typeof teams.$inferSelect;

export function quotaOf(row: TeamRow): TeamQuota {
  return {
    maxSandboxes: row.maxSandboxes,
    maxVcpus: row.maxVcpus,
    maxMemoryMiB: row.maxMemoryMib,
    maxDiskMiB: row.maxDiskMib,
    createsPerMinute: row.createsPerMinute,
    requestsPerSecond: row.requestsPerSecond,
    maxLifetimeS: row.maxLifetimeS,
  };
}

/** The `teams` columns a (partial) quota sets. */
export function quotaColumns(q: Partial<TeamQuota>): Partial<TeamRow> {
  const cols: Partial<TeamRow> = {};
  if (q.maxSandboxes !== undefined) cols.maxSandboxes = q.maxSandboxes;
  if (q.maxVcpus !== undefined) cols.maxVcpus = q.maxVcpus;
  if (q.maxMemoryMiB !== undefined) cols.maxMemoryMib = q.maxMemoryMiB;
  if (q.maxDiskMiB !== undefined) cols.maxDiskMib = q.maxDiskMiB;
  if (q.createsPerMinute !== undefined) cols.createsPerMinute = q.createsPerMinute;
  if (q.requestsPerSecond !== undefined) cols.requestsPerSecond = q.requestsPerSecond;
  if (q.maxLifetimeS !== undefined) cols.maxLifetimeS = q.maxLifetimeS;
  return cols;
}

/** What a team's live sandboxes hold, and how many it started in the last minute. */
export interface TeamUsage {
  sandboxes: number;
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
  createdLastMinute: number;
  /** Seconds until the oldest of those leaves the minute. */
  createsFreeInS: number;
  /** Seconds until the first of its running sandboxes ends (a guess at when room comes back). */
  nextEndInS: number | undefined;
}

/** Resources a sandbox takes, as far as they are known. */
export interface SandboxSize {
  vcpus: number;
  memoryMiB: number;
  diskMiB: number;
}

/** What a sandbox of a built template takes (its row's sizes); nothing known of a recipe's before it runs. */
export function templateSize(
  row: { cpuCount: number; memoryMb: number; diskSizeMb: number } | undefined,
): SandboxSize {
  return { vcpus: row?.cpuCount ?? 0, memoryMiB: row?.memoryMb ?? 0, diskMiB: row?.diskSizeMb ?? 0 };
}

const LIVE: ('creating' | 'running' | 'paused')[] = ['creating', 'running', 'paused'];
/** Retry-After when room comes back at no known time. */
const DEFAULT_RETRY_S = 30;
const clampRetry = (s: number | undefined) => Math.min(3600, Math.max(1, Math.ceil(s ?? DEFAULT_RETRY_S)));

/**
 * The quotas an operator sets per team, enforced from the database so that they hold
 * across server replicas: a create is checked against the team's live sandboxes' rows and
 * those started in the last minute; each API request takes a token from its key's bucket
 * in `rate_buckets` in one statement. Every refusal is a TeamLimitError (429 with
 * Retry-After) and counted in `aiva_quota_rejections_total`.
 */
/**
 * The first key of the teams' advisory locks (two-int form, a key space apart from the
 * leader's one-bigint lock): "aivq" in ASCII.
 */
const TEAM_LOCK_SPACE = 0x61697671;

export class TeamQuotas {
  constructor(
    private readonly db: Database,
    private readonly rejections: Counter<'team' | 'kind'>,
    /** The server's default cap on a team's live sandboxes (`limits.maxSandboxesPerTeam`). */
    private readonly defaultMaxSandboxes: number,
  ) {}

  async quota(teamId: string): Promise<TeamQuota | undefined> {
    const [row] = await this.db.select().from(teams).where(eq(teams.id, teamId)).limit(1);
    return row && quotaOf(row);
  }

  /** Counts a refusal and makes its error. */
  refuse(teamId: string, kind: QuotaKind, message: string, retryAfterS?: number): TeamLimitError {
    this.rejections.inc({ team: teamId, kind });
    return new TeamLimitError(message, kind, clampRetry(retryAfterS));
  }

  /**
   * The timeout a create, `setTimeout` or connect may have: `timeoutS`, or when none is
   * asked for, `defaultS` capped at the team's max lifetime. One past it is refused (400, as
   * E2B refuses a timeout past its maximum), naming the maximum.
   */
  timeoutFor(quota: TeamQuota | undefined, timeoutS: number | undefined, defaultS: number): number {
    const max = quota?.maxLifetimeS ?? null;
    if (timeoutS === undefined) return max === null ? defaultS : Math.min(defaultS, max);
    if (max !== null && timeoutS > max)
      throw new InvalidRequestError(
        `timeout ${timeoutS}s is longer than your team's maximum sandbox lifetime of ${max}s`,
      );
    return timeoutS;
  }

  /** What the team's live sandboxes hold, and its creates in the last minute (one query). */
  async usage(teamId: string, exceptId?: string, db: Database = this.db): Promise<TeamUsage> {
    const live = inArray(sandboxes.state, LIVE);
    const active = inArray(sandboxes.state, ['creating', 'running']);
    const recent = gt(sandboxes.startedAt, sql`now() - interval '1 minute'`);
    const [r] = await db
      .select({
        sandboxes: sql<number>`count(*) filter (where ${live})`.mapWith(Number),
        vcpus: sql<number>`coalesce(sum(${sandboxes.cpuCount}) filter (where ${active}), 0)`.mapWith(Number),
        memoryMiB: sql<number>`coalesce(sum(${sandboxes.memoryMb}) filter (where ${active}), 0)`.mapWith(
          Number,
        ),
        diskMiB: sql<number>`coalesce(sum(${sandboxes.diskSizeMb}) filter (where ${live}), 0)`.mapWith(
          Number,
        ),
        createdLastMinute: sql<number>`count(*) filter (where ${recent})`.mapWith(Number),
        createsFreeInS:
          sql<number>`coalesce(extract(epoch from min(${sandboxes.startedAt}) filter (where ${recent}) + interval '1 minute' - now()), 0)`.mapWith(
            Number,
          ),
        nextEndInS: sql<
          number | null
        >`extract(epoch from min(${sandboxes.endAt}) filter (where ${sandboxes.state} = 'running') - now())`,
      })
      .from(sandboxes)
      .where(
        and(
          eq(sandboxes.teamId, teamId),
          or(live, recent),
          exceptId ? sql`${sandboxes.id} <> ${exceptId}` : undefined,
        ),
      );
    return {
      sandboxes: r?.sandboxes ?? 0,
      vcpus: r?.vcpus ?? 0,
      memoryMiB: r?.memoryMiB ?? 0,
      diskMiB: r?.diskMiB ?? 0,
      createdLastMinute: r?.createdLastMinute ?? 0,
      createsFreeInS: r?.createsFreeInS ?? 0,
      nextEndInS: r?.nextEndInS == null ? undefined : Number(r.nextEndInS),
    };
  }

  /**
   * Before a create: refuses it if the team runs its most sandboxes (its quota, else the
   * server's default; `liveHere` is what this server counts, creates under way included),
   * has made its creates of the minute, or `size` (what is known of the new sandbox's) would
   * take it past its vCPUs, memory or disk.
   */
  async checkCreate(
    caller: Caller,
    quota: TeamQuota | undefined,
    liveHere: number,
    size: SandboxSize,
    db: Database = this.db,
  ): Promise<void> {
    const team = caller.teamId;
    const u = await this.usage(team, undefined, db);
    const maxSandboxes = quota?.maxSandboxes ?? this.defaultMaxSandboxes;
    if (Math.max(u.sandboxes, liveHere) >= maxSandboxes)
      throw this.refuse(
        team,
        'sandboxes',
        `your team already runs ${maxSandboxes} sandboxes, the most it may`,
        u.nextEndInS,
      );
    if (quota?.createsPerMinute != null && u.createdLastMinute >= quota.createsPerMinute)
      throw this.refuse(
        team,
        'creates',
        `your team may create ${quota.createsPerMinute} sandboxes a minute, and has`,
        u.createsFreeInS,
      );
    if (quota) this.checkSize(team, quota, u, size);
  }

  /**
   * Admits a create for good: checks it as `checkCreate` does and runs `insert` (its row)
   * in one transaction that holds the team's advisory lock, so creates racing on this
   * replica or on others are counted one after another and cannot pass a quota together.
   * The lock is the transaction's: it goes with the commit or the rollback.
   */
  async admitCreate(
    caller: Caller,
    quota: TeamQuota | undefined,
    liveHere: number,
    size: SandboxSize,
    insert: (db: Database) => Promise<void>,
  ): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.execute(sql`select pg_advisory_xact_lock(${TEAM_LOCK_SPACE}, hashtext(${caller.teamId}))`);
      await this.checkCreate(caller, quota, liveHere, size, tx);
      await insert(tx);
    });
  }

  /** Once the node says what sandbox `id` takes: refuses it if, with the team's others, it is past a quota. */
  async checkStarted(teamId: string, id: string, size: SandboxSize): Promise<void> {
    const quota = await this.quota(teamId);
    if (!quota || (quota.maxVcpus ?? quota.maxMemoryMiB ?? quota.maxDiskMiB) === null) return;
    this.checkSize(teamId, quota, await this.usage(teamId, id), size);
  }

  private checkSize(team: string, q: TeamQuota, u: TeamUsage, size: SandboxSize): void {
    const over = (max: number | null, used: number, more: number) => max !== null && used + more > max;
    const says = (what: string, max: number, used: number, more: number) =>
      `this sandbox's ${more} ${what} with the ${used} your team's sandboxes hold is past its quota of ${max} ${what}`;
    if (over(q.maxVcpus, u.vcpus, size.vcpus))
      throw this.refuse(team, 'vcpus', says('vCPUs', q.maxVcpus ?? 0, u.vcpus, size.vcpus), u.nextEndInS);
    if (over(q.maxMemoryMiB, u.memoryMiB, size.memoryMiB))
      throw this.refuse(
        team,
        'memory',
        says('MiB of memory', q.maxMemoryMiB ?? 0, u.memoryMiB, size.memoryMiB),
        u.nextEndInS,
      );
    if (over(q.maxDiskMiB, u.diskMiB, size.diskMiB))
      throw this.refuse(
        team,
        'disk',
        says('MiB of disk', q.maxDiskMiB ?? 0, u.diskMiB, size.diskMiB),
        u.nextEndInS,
      );
  }

  /**
   * Takes a token from the key's request bucket, in one statement that also reads the
   * team's rate (no row is made for a team without one); refuses the request if there was
   * none. The bucket holds `rate` tokens at most and gets `rate` back a second.
   */
  async takeRequestToken(caller: Caller): Promise<void> {
    const refill = sql`least(excluded.rate::float8, b.tokens + excluded.rate * extract(epoch from (now() - b.updated_at)))`;
    const result = await this.db.execute(sql`
      insert into rate_buckets as b (key_id, rate, tokens, allowed, updated_at)
      select ${caller.keyId}, t.requests_per_second, t.requests_per_second - 1, true, now()
        from teams t where t.id = ${caller.teamId} and t.requests_per_second is not null
      on conflict (key_id) do update set
        rate = excluded.rate,
        tokens = case when ${refill} >= 1 then ${refill} - 1 else ${refill} end,
        allowed = ${refill} >= 1,
        updated_at = now()
      returning b.allowed, b.tokens, b.rate`);
    const [row] = (result as unknown as { rows: { allowed: boolean; tokens: number; rate: number }[] }).rows;
    if (!row || row.allowed) return;
    throw this.refuse(
      caller.teamId,
      'requests',
      `your team's keys may make ${row.rate} requests a second each`,
      (1 - Number(row.tokens)) / row.rate,
    );
  }
}
