import type { SandboxMetric } from '../api/e2b/schemas.js';
import type { NodeClient } from '../nodes/node-client.js';
import { InvalidRequestError } from './errors.js';

/** The most sandboxes one batch metrics request may name (E2B's limit). */
const BATCH_METRICS_MAX = 100;

/**
 * A sample as kept: E2B's metric and, from a node that counts it (protocol 1.3), the bytes
 * the sandbox has sent out so far (for metering only: E2B's metrics have no egress).
 */
export type UsageSample = SandboxMetric & { egressBytes?: number };

/** A kept sample as E2B's API shows it. */
const e2bMetric = ({ egressBytes: _, ...m }: UsageSample): SandboxMetric => m;

/** Samples kept per sandbox: an hour at the default 5 s. */
export const METRIC_SAMPLES_KEPT = 720;

/**
 * Samples of running sandboxes' CPU, memory and disk use (E2B's `GET /sandboxes/{id}/metrics`),
 * taken every `intervalMs` from the node and kept in memory, the newest METRIC_SAMPLES_KEPT
 * of each sandbox, until it ends; with them the node's egress counter, which the usage
 * meter reads (`stored`) and E2B's metrics leave out.
 */
export class SandboxMetrics {
  private readonly samples = new Map<string, UsageSample[]>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    /** The node a sandbox runs on. */
    private readonly nodeOf: (id: string) => NodeClient,
    /** The ids of the sandboxes running now. */
    private readonly running: () => string[],
    private readonly intervalMs = 5000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.sampleAll(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * The newest sample of each of `ids` (E2B's batch metrics) that `visible` says is the
   * caller's and running or paused; the others, and those without samples, are left out.
   */
  async latestOf(
    ids: string[],
    visible: (id: string) => 'running' | 'paused' | undefined,
  ): Promise<Record<string, SandboxMetric>> {
    const unique = [...new Set(ids)];
    if (unique.length > BATCH_METRICS_MAX)
      throw new InvalidRequestError(`Too many sandboxes requested, maximum is ${BATCH_METRICS_MAX}`);
    if (unique.some((id) => !/^[a-z0-9]{1,64}$/.test(id)))
      throw new InvalidRequestError('Invalid sandbox ID');
    const out: Record<string, SandboxMetric> = {};
    await Promise.all(
      unique.map(async (id) => {
        const state = visible(id);
        const m = state && (await this.latest(id, state === 'running'));
        if (m) out[id] = m;
      }),
    );
    return out;
  }

  /** Drops the samples of a sandbox that ended. */
  forget(id: string): void {
    this.samples.delete(id);
  }

  /**
   * The samples of `id` between `start` and `end` (unix seconds); a running sandbox not
   * sampled yet is sampled now.
   */
  async between(id: string, running: boolean, start?: number, end?: number): Promise<SandboxMetric[]> {
    if (!this.samples.get(id)?.length && running) await this.sampleOne(id);
    return (this.samples.get(id) ?? [])
      .filter(
        (m) =>
          (start === undefined || m.timestampUnix >= start) && (end === undefined || m.timestampUnix <= end),
      )
      .map(e2bMetric);
  }

  /** The samples of `id` kept between `start` and `end` (unix seconds), none taken now. */
  stored(id: string, start: number, end: number): UsageSample[] {
    return (this.samples.get(id) ?? []).filter((m) => m.timestampUnix >= start && m.timestampUnix <= end);
  }

  /** The newest sample of `id` (E2B's `GET /sandboxes/metrics`); a running sandbox not sampled yet is sampled now. */
  async latest(id: string, running: boolean): Promise<SandboxMetric | undefined> {
    if (!this.samples.get(id)?.length && running) await this.sampleOne(id);
    const m = this.samples.get(id)?.at(-1);
    return m && e2bMetric(m);
  }

  private async sampleAll(): Promise<void> {
    await Promise.allSettled(this.running().map((id) => this.sampleOne(id)));
  }

  private async sampleOne(id: string): Promise<void> {
    const u = await this.nodeOf(id)
      .usage(id)
      .catch(() => undefined);
    if (!u) return;
    const list = this.samples.get(id) ?? [];
    list.push({
      timestamp: u.timestamp,
      timestampUnix: Math.floor(Date.parse(u.timestamp) / 1000),
      cpuCount: u.cpuCount,
      cpuUsedPct: u.cpuUsedPct,
      memUsed: u.memUsed,
      memTotal: u.memTotal,
      memCache: u.memCache,
      diskUsed: u.diskUsed,
      diskTotal: u.diskTotal,
      ...(u.egressBytes !== undefined ? { egressBytes: u.egressBytes } : {}),
    });
    if (list.length > METRIC_SAMPLES_KEPT) list.splice(0, list.length - METRIC_SAMPLES_KEPT);
    this.samples.set(id, list);
  }
}
