import { and, eq, gt, lt, type SQL } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { sandboxes, usageRecords } from '../db/schema.js';
import { InvalidRequestError } from './errors.js';
import { costOf, FREE, type PriceTable, priceAt, priceChanges } from './usage-prices.js';

export type UsageGroupBy = 'sandbox' | 'template' | 'day';

export interface UsageSums {
  vcpuSeconds: number;
  memoryGiBSeconds: number;
  diskGiBSeconds: number;
  cpuSeconds: number;
  egressBytes: number;
  cost: number;
}

export interface UsageItem extends UsageSums {
  teamID: string;
  sandboxID?: string;
  templateID?: string;
  day?: string;
  /** The allocated vCPUs (of a template or day: the most one sandbox in it had). */
  vcpus: number;
}

export interface UsageReport {
  from: string;
  to: string;
  groupBy: UsageGroupBy;
  currency: string;
  items: UsageItem[];
  /** The items' sums; `cost` less the free tier, `grossCost` before it. */
  total: UsageSums & { grossCost: number; freeTier: number };
}

export interface UsageQuery {
  from: Date;
  to: Date;
  groupBy: UsageGroupBy;
  /** One team's usage; none: every team's (the operator's view). */
  teamId?: string;
}

const DAY_MS = 24 * 3600 * 1000;
const zero = (): UsageSums => ({
  vcpuSeconds: 0,
  memoryGiBSeconds: 0,
  diskGiBSeconds: 0,
  cpuSeconds: 0,
  egressBytes: 0,
  cost: 0,
});

/** The UTC day (YYYY-MM-DD) and month (YYYY-MM) of a time. */
const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const monthOf = (ms: number) => new Date(ms).toISOString().slice(0, 7);

/** The first instants of the UTC days and months between `from` and `to`. */
function calendarCuts(from: number, to: number): number[] {
  const cuts: number[] = [];
  for (let d = Math.ceil(from / DAY_MS) * DAY_MS; d < to; d += DAY_MS) cuts.push(d);
  return cuts;
}

/**
 * Usage reports from the usage records: each record's span within the range is split where
 * a price changes and at UTC midnights, priced by the entry in effect, and summed by group.
 * A sandbox started within the range costs at least its `sandboxMinimum` (the difference
 * goes to its first group); each team's monthly free tier comes off the total, against
 * that month's usage within the range.
 */
export class UsageReports {
  constructor(
    private readonly db: Database,
    private readonly prices: PriceTable = FREE,
  ) {}

  async report(q: UsageQuery): Promise<UsageReport> {
    const from = q.from.getTime();
    const to = q.to.getTime();
    if (!(from < to)) throw new InvalidRequestError('from must be before to');
    const where: SQL[] = [gt(usageRecords.intervalEnd, q.from), lt(usageRecords.intervalStart, q.to)];
    if (q.teamId) where.push(eq(usageRecords.teamId, q.teamId));
    const records = await this.db
      .select({ r: usageRecords, startedAt: sandboxes.startedAt })
      .from(usageRecords)
      .leftJoin(sandboxes, eq(sandboxes.id, usageRecords.sandboxId))
      .where(and(...where))
      .orderBy(usageRecords.intervalStart);
    const cuts = [...priceChanges(this.prices), ...calendarCuts(from, to)].sort((a, b) => a - b);
    const groups = new Map<string, UsageItem>();
    const bySandbox = new Map<string, { cost: number; group: string; startedAt?: number; startMs: number }>();
    const byTeamMonth = new Map<string, { cost: number; firstMs: number }>();
    for (const { r, startedAt } of records) {
      const rs = r.intervalStart.getTime();
      const re = r.intervalEnd.getTime();
      const lo = Math.max(rs, from);
      const hi = Math.min(re, to);
      const points = [lo, ...cuts.filter((c) => c > lo && c < hi), hi];
      for (let i = 0; i + 1 < points.length; i++) {
        const a = points[i] as number;
        const b = points[i + 1] as number;
        const f = (b - a) / (re - rs);
        const u = {
          vcpuSeconds: r.vcpuSeconds * f,
          memoryGiBSeconds: r.memoryGibSeconds * f,
          diskGiBSeconds: r.diskGibSeconds * f,
          cpuSeconds: r.cpuSeconds * f,
          egressBytes: (r.egressBytes ?? 0) * f,
        };
        const cost = costOf(priceAt(this.prices, a), u);
        const key =
          q.groupBy === 'sandbox' ? r.sandboxId : q.groupBy === 'template' ? r.templateId : dayOf(a);
        const gk = `${r.teamId}\u0000${key}`;
        let g = groups.get(gk);
        if (!g) {
          g = {
            teamID: r.teamId,
            [`${q.groupBy}${q.groupBy === 'day' ? '' : 'ID'}`]: key,
            vcpus: 0,
            ...zero(),
          };
          groups.set(gk, g);
        }
        add(g, { ...u, cost });
        g.vcpus = Math.max(g.vcpus, r.vcpus);
        const sk = `${r.teamId}\u0000${r.sandboxId}`;
        const s = bySandbox.get(sk) ?? { cost: 0, group: gk, startedAt: startedAt?.getTime(), startMs: a };
        s.cost += cost;
        bySandbox.set(sk, s);
        const mk = `${r.teamId}\u0000${monthOf(a)}`;
        const m = byTeamMonth.get(mk) ?? { cost: 0, firstMs: a };
        m.cost += cost;
        byTeamMonth.set(mk, m);
      }
    }
    // The per-sandbox minimum, for sandboxes started in the range.
    for (const s of bySandbox.values()) {
      if (s.startedAt === undefined || s.startedAt < from || s.startedAt >= to) continue;
      const min = priceAt(this.prices, s.startedAt)?.sandboxMinimum ?? 0;
      if (s.cost >= min) continue;
      const g = groups.get(s.group);
      if (g) g.cost += min - s.cost;
      const m = byTeamMonth.get(`${s.group.split('\u0000')[0]}\u0000${monthOf(s.startMs)}`);
      if (m) m.cost += min - s.cost;
    }
    const items = [...groups.values()].map(rounded);
    const total = zero();
    for (const i of items) add(total, i);
    let freeTier = 0;
    for (const m of byTeamMonth.values())
      freeTier += Math.min(m.cost, priceAt(this.prices, m.firstMs)?.freeTierMonthly ?? 0);
    const gross = total.cost;
    return {
      from: q.from.toISOString(),
      to: q.to.toISOString(),
      groupBy: q.groupBy,
      currency: this.prices.currency,
      items,
      total: {
        ...rounded(total),
        cost: round(Math.max(0, gross - freeTier)),
        grossCost: round(gross),
        freeTier: round(freeTier),
      },
    };
  }
}

function add(into: UsageSums, u: Partial<UsageSums>): void {
  into.vcpuSeconds += u.vcpuSeconds ?? 0;
  into.memoryGiBSeconds += u.memoryGiBSeconds ?? 0;
  into.diskGiBSeconds += u.diskGiBSeconds ?? 0;
  into.cpuSeconds += u.cpuSeconds ?? 0;
  into.egressBytes += u.egressBytes ?? 0;
  into.cost += u.cost ?? 0;
}

const round = (n: number) => Math.round(n * 1e6) / 1e6;

function rounded<T extends UsageSums>(s: T): T {
  return {
    ...s,
    vcpuSeconds: round(s.vcpuSeconds),
    memoryGiBSeconds: round(s.memoryGiBSeconds),
    diskGiBSeconds: round(s.diskGiBSeconds),
    cpuSeconds: round(s.cpuSeconds),
    egressBytes: Math.round(s.egressBytes),
    cost: round(s.cost),
  };
}

const CSV_COLUMNS = [
  'teamID',
  'key',
  'vcpus',
  'vcpuSeconds',
  'memoryGiBSeconds',
  'diskGiBSeconds',
  'cpuSeconds',
  'egressBytes',
  'cost',
] as const;

/** A report as CSV: a header, one line per item (`key` is its group key), and a `total` line. */
export function usageCsv(r: UsageReport): string {
  const cell = (v: unknown) => {
    const s = String(v ?? '');
    return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
  };
  const lines = [CSV_COLUMNS.join(',')];
  for (const i of r.items) {
    const key = i.sandboxID ?? i.templateID ?? i.day;
    lines.push(CSV_COLUMNS.map((c) => cell(c === 'key' ? key : i[c])).join(','));
  }
  lines.push(
    CSV_COLUMNS.map((c) =>
      cell(c === 'teamID' ? 'total' : c === 'key' || c === 'vcpus' ? '' : r.total[c]),
    ).join(','),
  );
  return `${lines.join('\n')}\n`;
}
