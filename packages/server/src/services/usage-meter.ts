import { and, eq, gt, inArray, isNotNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Counter } from 'prom-client';
import type { Database } from '../db/database.js';
import { type MeteredState, sandboxes, usageRecords } from '../db/schema.js';
import type { ServerReplica } from '../replicas/server-replica.js';
import type { UsageSample } from './sandbox-metrics.js';

/** The default metering interval: a record per sandbox per minute. */
export const METERING_INTERVAL_S = 60;

const GIB = 1024 ** 3;
const DAY_MS = 24 * 60 * 60 * 1000;

/** What the meter reads of the sandbox service. */
export interface MeteredSandboxes {
  /** The live sandboxes and their states now. */
  live(): Iterable<{ id: string; state: string }>;
  /** The usage samples of a sandbox between two times (unix seconds). */
  samples(id: string, start: number, end: number): UsageSample[];
}

/** A reading of a sandbox's egress counter: when (ms since the epoch) and its bytes. */
export interface EgressReading {
  atMs: number;
  bytes: number;
}

/**
 * The bytes a sandbox sent after reading `from`, as far as `samples` tell (a sample is
 * counted in the first record written after it was taken), from the cumulative egress
 * counter its samples carry: the sum of the counter's rises, a reading lower than the one
 * before counting from 0 (the counter started again: a node restart without the old
 * value, the sandbox resumed on another node), so never negative. Without `from` (its
 * records do not say where they counted to) the first reading is where counting starts.
 * `bytes` is null if no sample carries the counter (a node that keeps none); `last` is the
 * reading counted up to, where the next span starts.
 */
export function egressSince(
  from: EgressReading | undefined,
  samples: UsageSample[],
): { bytes: number | null; last: EgressReading | undefined } {
  const readings = samples.flatMap((m) =>
    m.egressBytes === undefined ? [] : [{ atMs: Date.parse(m.timestamp), bytes: m.egressBytes }],
  );
  if (!readings.length) return { bytes: null, last: from };
  const after = from ? readings.filter((r) => r.atMs > from.atMs) : readings;
  let last = from ?? after.shift();
  let bytes = 0;
  for (const r of after) {
    if (!last) break;
    bytes += r.bytes >= last.bytes ? r.bytes - last.bytes : r.bytes;
    last = r;
  }
  return { bytes, last };
}

export interface UsageCounters {
  vcpuSeconds: Counter<'team'>;
  memoryGibSeconds: Counter<'team'>;
  egressBytes: Counter<'team'>;
}

/** A sandbox's fixed facts, as its row has them. */
interface Allocation {
  teamId: string;
  templateId: string;
  vcpus: number;
  memoryGib: number;
  diskGib: number;
  startedAt: Date;
}

/**
 * Meters every running or paused sandbox: at each interval's end, and where a sandbox's
 * state changes or it ends, one record per sandbox of the span since its previous record
 * (`usage_records`). A crash loses at most the span since the last interval's end; after a
 * restart the next record starts where the last one ended (and its egress from the counter
 * reading the last one counted up to). Among server replicas only the
 * leader writes; a state change elsewhere is seen at the leader's next interval.
 */
export class UsageMeter {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  /** Per sandbox: where its next record starts, once known. */
  private readonly lastEnd = new Map<string, Date>();
  private readonly allocations = new Map<string, Allocation>();
  /** Per sandbox: the egress reading its records have counted up to, once known. */
  private readonly egressCounted = new Map<string, EgressReading>();
  /** Per sandbox: the write under way (a sandbox's records are written one after another). */
  private readonly writing = new Map<string, Promise<void>>();

  constructor(
    private readonly db: Database,
    private readonly sandboxSource: MeteredSandboxes,
    private readonly counters: UsageCounters,
    private readonly log: Logger,
    private readonly intervalMs = METERING_INTERVAL_S * 1000,
  ) {}

  /** Starts metering: now, or whenever `replica` leads. */
  start(replica?: ServerReplica): void {
    const lead = (on: boolean) => {
      if (on && !this.leading) {
        this.leading = true;
        this.lastEnd.clear();
        void this.catchUp().catch((e: Error) => this.log.warn({ err: e }, 'metering catch-up failed'));
        this.timer = setInterval(() => void this.tick(), this.intervalMs);
        this.timer.unref();
      } else if (!on) this.stopTimer();
    };
    replica?.on('leader', lead);
    lead(replica ? replica.leader : true);
  }

  /** Stops the timer and waits for the records being written. */
  async stop(): Promise<void> {
    this.stopTimer();
    await Promise.allSettled([...this.writing.values()]);
  }

  private stopTimer(): void {
    this.leading = false;
    clearInterval(this.timer);
  }

  /**
   * Closes a sandbox's span in `state` now: it leaves that state (pause, resume) or ends
   * (`ended`: its caches are dropped after).
   */
  close(id: string, state: string, ended = false): void {
    if (!this.leading || !isMetered(state)) {
      if (ended) this.drop(id);
      return;
    }
    const now = new Date();
    // Its samples now: an ended sandbox's are dropped right after.
    const samples = this.sandboxSource.samples(id, 0, Math.ceil(now.getTime() / 1000));
    void this.enqueue(id, () => this.write(id, state, now, samples)).finally(() => {
      if (ended) this.drop(id);
    });
  }

  /** Writes the span since its last record of every running or paused sandbox. */
  async tick(): Promise<void> {
    if (!this.leading) return;
    const now = new Date();
    const live = [...this.sandboxSource.live()].filter((s) => isMetered(s.state));
    await this.load(live.map((s) => s.id)).catch((e: Error) =>
      this.log.warn({ err: e }, 'metering: reading sandboxes failed'),
    );
    await Promise.allSettled(
      live.map((s) => this.enqueue(s.id, () => this.write(s.id, s.state as MeteredState, now))),
    );
  }

  private drop(id: string): void {
    this.lastEnd.delete(id);
    this.allocations.delete(id);
    this.egressCounted.delete(id);
  }

  private enqueue(id: string, fn: () => Promise<void>): Promise<void> {
    const next = (this.writing.get(id) ?? Promise.resolve())
      .then(fn)
      .catch((e: Error) => this.log.warn({ err: e, sandbox: id }, 'writing a usage record failed'));
    this.writing.set(id, next);
    void next.finally(() => {
      if (this.writing.get(id) === next) this.writing.delete(id);
    });
    return next;
  }

  /** Reads the allocations and last record ends of sandboxes not known yet. */
  private async load(ids: string[]): Promise<void> {
    const unknown = ids.filter((id) => !this.allocations.has(id) || !this.lastEnd.has(id));
    if (!unknown.length) return;
    const rows = await this.db
      .select({
        id: sandboxes.id,
        teamId: sandboxes.teamId,
        templateId: sandboxes.templateId,
        cpuCount: sandboxes.cpuCount,
        memoryMb: sandboxes.memoryMb,
        diskSizeMb: sandboxes.diskSizeMb,
        startedAt: sandboxes.startedAt,
        lastMs: sql<
          string | null
        >`(select extract(epoch from max(${usageRecords.intervalEnd})) * 1000 from ${usageRecords} where ${usageRecords.sandboxId} = ${sandboxes.id})`,
        lastCounter: sql<
          string | number | null
        >`(select ${usageRecords.egressCounterBytes} from ${usageRecords} where ${usageRecords.sandboxId} = ${sandboxes.id} order by ${usageRecords.intervalEnd} desc limit 1)`,
      })
      .from(sandboxes)
      .where(inArray(sandboxes.id, unknown));
    for (const r of rows) {
      this.allocations.set(r.id, {
        teamId: r.teamId,
        templateId: r.templateId,
        vcpus: r.cpuCount,
        memoryGib: r.memoryMb / 1024,
        diskGib: r.diskSizeMb / 1024,
        startedAt: r.startedAt,
      });
      if (!this.lastEnd.has(r.id))
        this.lastEnd.set(r.id, r.lastMs ? new Date(Math.round(Number(r.lastMs))) : r.startedAt);
      // Not recorded yet: its egress counter began with it, at 0. Recorded: its last record
      // counted up to the reading it kept, taken before the record's end.
      if (!this.egressCounted.has(r.id)) {
        if (!r.lastMs) this.egressCounted.set(r.id, { atMs: 0, bytes: 0 });
        else if (r.lastCounter !== null)
          this.egressCounted.set(r.id, { atMs: Math.round(Number(r.lastMs)), bytes: Number(r.lastCounter) });
      }
    }
  }

  /** One record of `id` from its last record's end to `end`, in `state`. */
  private async write(id: string, state: MeteredState, end: Date, kept?: UsageSample[]): Promise<void> {
    if (!this.allocations.has(id) || !this.lastEnd.has(id)) await this.load([id]);
    const a = this.allocations.get(id);
    const start = this.lastEnd.get(id);
    if (!a || !start || end <= start) return;
    const seconds = (end.getTime() - start.getTime()) / 1000;
    const running = state === 'running';
    const [from, to] = [Math.floor(start.getTime() / 1000), Math.ceil(end.getTime() / 1000)];
    const all = !running ? [] : (kept ?? this.sandboxSource.samples(id, 0, to));
    // Each sample is the use since the one before: those in the span, or (a span shorter
    // than the sampling) the latest before it.
    const inSpan = all.filter((m) => m.timestampUnix >= from && m.timestampUnix <= to);
    const before = all.filter((m) => m.timestampUnix < from).at(-1);
    const samples = inSpan.length ? inSpan : before ? [before] : [];
    const cores = samples.map((m) => (m.cpuUsedPct / 100) * m.cpuCount);
    // A paused sandbox sends nothing; a running one what its counter rose by since the last record.
    const egress = running
      ? egressSince(this.egressCounted.get(id), all)
      : { bytes: 0, last: this.egressCounted.get(id) };
    const record = {
      sandboxId: id,
      teamId: a.teamId,
      templateId: a.templateId,
      state,
      intervalStart: start,
      intervalEnd: end,
      vcpus: a.vcpus,
      vcpuSeconds: running ? a.vcpus * seconds : 0,
      memoryGibSeconds: running ? a.memoryGib * seconds : 0,
      diskGibSeconds: a.diskGib * seconds,
      cpuSeconds: cores.length ? (cores.reduce((x, y) => x + y, 0) / cores.length) * seconds : 0,
      peakMemoryBytes: samples.length ? Math.max(...samples.map((m) => m.memUsed)) : null,
      egressBytes: egress.bytes,
      egressCounterBytes: egress.last?.bytes ?? null,
    };
    const written = await this.db
      .insert(usageRecords)
      .values(record)
      .onConflictDoNothing()
      .returning({ end: usageRecords.intervalEnd });
    if (!written.length) {
      // Another writer (a former leader) recorded from there: continue after its record.
      this.lastEnd.delete(id);
      this.egressCounted.delete(id);
      await this.load([id]);
      return;
    }
    this.lastEnd.set(id, end);
    if (egress.last) this.egressCounted.set(id, egress.last);
    this.counters.vcpuSeconds.inc({ team: a.teamId }, record.vcpuSeconds);
    this.counters.memoryGibSeconds.inc({ team: a.teamId }, record.memoryGibSeconds);
    if (record.egressBytes) this.counters.egressBytes.inc({ team: a.teamId }, record.egressBytes);
  }

  /**
   * Sandboxes that ended (in the last day) after their last record, as when the server was
   * down: their final span, to their end, in the state their last record had.
   */
  private async catchUp(): Promise<void> {
    const since = new Date(Date.now() - DAY_MS);
    const rows = await this.db
      .select({ id: sandboxes.id, endedAt: sandboxes.endedAt, state: usageRecords.state })
      .from(sandboxes)
      .innerJoin(usageRecords, eq(usageRecords.sandboxId, sandboxes.id))
      .where(
        and(
          isNotNull(sandboxes.endedAt),
          gt(sandboxes.endedAt, since),
          gt(sandboxes.endedAt, usageRecords.intervalEnd),
          // the sandbox's last record
          sql`${usageRecords.intervalEnd} = (select max(u.interval_end) from usage_records u where u.sandbox_id = ${sandboxes.id})`,
        ),
      );
    for (const r of rows) {
      const endedAt = r.endedAt;
      if (!endedAt) continue;
      await this.enqueue(r.id, () => this.write(r.id, r.state, endedAt));
      this.drop(r.id);
    }
  }
}

function isMetered(state: string): state is MeteredState {
  return state === 'running' || state === 'paused';
}

/** Bytes → GiB, for reports. */
export const bytesToGib = (b: number): number => b / GIB;
