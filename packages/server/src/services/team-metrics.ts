import { and, eq, gte, isNull, lte, ne, or } from 'drizzle-orm';
import type { MaxTeamMetric, TeamMetric } from '../api/e2b/schemas.js';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import { InvalidRequestError } from './errors.js';

/** E2B's default range of team metrics: the last 7 days. */
const DEFAULT_RANGE_S = 7 * 24 * 3600;
/** The step of E2B's maximum start rate (its metrics' export period). */
const START_RATE_STEP_S = 5;

/** E2B's step for a range: fewer than 1000 points. */
export function stepFor(rangeS: number): number {
  if (rangeS < 3600) return 5;
  if (rangeS < 6 * 3600) return 30;
  if (rangeS < 12 * 3600) return 60;
  if (rangeS < 24 * 3600) return 120;
  if (rangeS < 7 * 24 * 3600) return 300;
  return 900;
}

interface Range {
  startMs: number;
  endMs: number;
}

/** A sandbox's life: from when it was ready until it ended (open while it lives). */
type Life = { from: number; to: number };

/**
 * A team's sandbox counts over time (E2B's `GET /teams/{id}/metrics` and `/metrics/max`),
 * worked out from the sandboxes table: each sandbox counts from its start until it ended,
 * paused spells included (aiva keeps no history of pauses).
 */
export class TeamMetrics {
  constructor(private readonly db: Database) {}

  /** `start`/`end` (unix s) as E2B reads them: default the last 7 days; start after end → 400. */
  range(start?: number, end?: number): Range {
    const nowS = Date.now() / 1000;
    const endS = end ?? nowS;
    const startS = start ?? nowS - DEFAULT_RANGE_S;
    if (startS > endS) throw new InvalidRequestError('start time cannot be after end time');
    return { startMs: startS * 1000, endMs: endS * 1000 };
  }

  private async lives(teamId: string, r: Range): Promise<Life[]> {
    const rows = await this.db
      .select({ startedAt: sandboxes.startedAt, endedAt: sandboxes.endedAt })
      .from(sandboxes)
      .where(
        and(
          eq(sandboxes.teamId, teamId),
          ne(sandboxes.state, 'creating'),
          lte(sandboxes.startedAt, new Date(r.endMs)),
          or(isNull(sandboxes.endedAt), gte(sandboxes.endedAt, new Date(r.startMs))),
        ),
      );
    return rows.map((row) => ({ from: row.startedAt.getTime(), to: row.endedAt?.getTime() ?? Infinity }));
  }

  /**
   * Per step of the range (E2B's steps, aligned to the epoch): the most sandboxes running
   * at once and the starts per second. Steps with neither are left out, as E2B does.
   */
  async series(teamId: string, r: Range): Promise<TeamMetric[]> {
    const stepMs = stepFor((r.endMs - r.startMs) / 1000) * 1000;
    return (await this.buckets(teamId, r, stepMs)).map((b) => ({
      ...stamp(b.at),
      concurrentSandboxes: b.concurrent,
      sandboxStartRate: b.started / (stepMs / 1000),
    }));
  }

  /** The highest value of `metric` in the range and when it was reached; 0 now if there is none. */
  async max(
    teamId: string,
    r: Range,
    metric: 'concurrent_sandboxes' | 'sandbox_start_rate',
  ): Promise<MaxTeamMetric> {
    // Concurrency: one step over the whole range, whose peak says when it was reached.
    const stepMs =
      metric === 'sandbox_start_rate' ? START_RATE_STEP_S * 1000 : Math.max(1000, r.endMs - r.startMs + 1);
    let best = { at: Date.now(), value: 0 };
    for (const b of await this.buckets(teamId, r, stepMs)) {
      const value = metric === 'sandbox_start_rate' ? b.started / START_RATE_STEP_S : b.concurrent;
      if (value > best.value) best = { at: metric === 'sandbox_start_rate' ? b.at : b.peakAt, value };
    }
    return { ...stamp(best.at), value: best.value };
  }

  /** Steps of `stepMs` in which a sandbox ran or started, with the peak and the starts in each. */
  private async buckets(teamId: string, r: Range, stepMs: number) {
    const events: { t: number; d: 1 | -1 }[] = [];
    for (const l of await this.lives(teamId, r)) {
      events.push({ t: l.from, d: 1 });
      if (l.to !== Infinity) events.push({ t: l.to, d: -1 });
    }
    // Ends before starts at the same instant: a sandbox replaced is not two.
    events.sort((a, b) => a.t - b.t || a.d - b.d);
    let i = 0;
    let count = 0;
    for (; i < events.length && (events[i]?.t ?? 0) < r.startMs; i++) count += events[i]?.d ?? 0;
    const out: { at: number; peakAt: number; concurrent: number; started: number }[] = [];
    let at = Math.floor(r.startMs / stepMs) * stepMs;
    while (at <= r.endMs) {
      const next = at + stepMs;
      let peak = count;
      let peakAt = Math.max(at, r.startMs);
      let started = 0;
      for (let e = events[i]; e && e.t < next && e.t <= r.endMs; e = events[++i]) {
        count += e.d;
        if (e.d > 0) started++;
        if (count > peak) {
          peak = count;
          peakAt = e.t;
        }
      }
      if (peak > 0 || started > 0) out.push({ at, peakAt, concurrent: peak, started });
      const upcoming = events[i];
      if (count > 0) at = next;
      else if (upcoming && upcoming.t <= r.endMs)
        at = Math.max(next, Math.floor(upcoming.t / stepMs) * stepMs);
      else break;
    }
    return out;
  }
}

function stamp(ms: number): { timestamp: string; timestampUnix: number } {
  return { timestamp: new Date(ms).toISOString(), timestampUnix: Math.floor(ms / 1000) };
}
