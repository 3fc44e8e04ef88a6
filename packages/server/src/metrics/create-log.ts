/** One sandbox create this replica ran: when it ended, for which team, how long it took, and whether it started. */
export interface CreateOutcome {
  /** When the create finished (ms since the epoch). */
  at: number;
  teamId: string;
  /** From the request's start to a sandbox whose envd answers, or to the failure. */
  ms: number;
  ok: boolean;
}

/** How long outcomes are kept: the dashboard's longest range. */
export const CREATE_LOG_KEEP_MS = 24 * 3600 * 1000;
/** At most this many are kept (the oldest go first), so a busy server's memory stays bounded. */
export const CREATE_LOG_MAX = 100_000;

/**
 * The recent creates of this replica, in the order they finished, beside the Prometheus
 * histogram (which has no time axis): what `GET /v1/sandboxes/stats` makes its creates
 * per minute, latency percentiles and failures from.
 */
export class CreateLog {
  private items: CreateOutcome[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  record(teamId: string, ms: number, ok: boolean): void {
    const at = this.now();
    this.items.push({ at, teamId, ms, ok });
    if (this.items.length > CREATE_LOG_MAX) this.items.splice(0, this.items.length - CREATE_LOG_MAX);
    const cutoff = at - CREATE_LOG_KEEP_MS;
    if ((this.items[0]?.at ?? cutoff) < cutoff) this.items = this.items.filter((o) => o.at >= cutoff);
  }

  /** The outcomes that finished in [fromMs, toMs), of one team or (no team) of all. */
  between(fromMs: number, toMs: number, teamId?: string): CreateOutcome[] {
    return this.items.filter(
      (o) => o.at >= fromMs && o.at < toMs && (teamId === undefined || o.teamId === teamId),
    );
  }
}
