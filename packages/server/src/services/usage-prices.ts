import { readFileSync } from 'node:fs';

/** The prices in effect from `effectiveFrom` on (until the next entry's date). */
export interface PriceEntry {
  /** An ISO date or date-time (UTC when no zone is given). */
  effectiveFrom: string;
  vcpuHour: number;
  memoryGiBHour: number;
  diskGiBMonth: number;
  egressGiB: number;
  /** A sandbox started in a report's range costs at least this. */
  sandboxMinimum: number;
  /** Each team's usage worth this much per calendar month is free (deducted from the total). */
  freeTierMonthly: number;
}

/** The configured price table (`aiva up --prices <file>`). */
export interface PriceTable {
  currency: string;
  prices: PriceEntry[];
}

/** A month for disk prices: 30 days. */
export const MONTH_SECONDS = 30 * 24 * 3600;
const GIB = 1024 ** 3;
const FIELDS = [
  'vcpuHour',
  'memoryGiBHour',
  'diskGiBMonth',
  'egressGiB',
  'sandboxMinimum',
  'freeTierMonthly',
] as const;

/** No table configured: everything is free. */
export const FREE: PriceTable = { currency: 'USD', prices: [] };

/** Checks a price table (from JSON); throws an Error saying what is wrong. */
export function parsePriceTable(json: unknown): PriceTable {
  const t = json as { currency?: unknown; prices?: unknown };
  if (!t || typeof t !== 'object' || !Array.isArray(t.prices))
    throw new Error('a price table is {"currency": "USD", "prices": [{"effectiveFrom": …}, …]}');
  const prices = t.prices.map((p: Record<string, unknown>, i: number) => {
    if (typeof p?.effectiveFrom !== 'string' || Number.isNaN(Date.parse(p.effectiveFrom)))
      throw new Error(`prices[${i}].effectiveFrom must be an ISO date`);
    const entry: Record<string, unknown> = { effectiveFrom: new Date(p.effectiveFrom).toISOString() };
    for (const f of FIELDS) {
      const v = p[f] ?? 0;
      if (typeof v !== 'number' || !Number.isFinite(v) || v < 0)
        throw new Error(`prices[${i}].${f} must be a number ≥ 0`);
      entry[f] = v;
    }
    return entry as unknown as PriceEntry;
  });
  prices.sort((a, b) => Date.parse(a.effectiveFrom) - Date.parse(b.effectiveFrom));
  return { currency: typeof t.currency === 'string' ? t.currency : 'USD', prices };
}

/** Reads and checks a price table file. */
export function readPriceTable(path: string): PriceTable {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new Error(`cannot read the price table ${path}: ${(e as Error).message}`);
  }
  try {
    return parsePriceTable(json);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}

/** The prices in effect at `ms` (none before the first entry: free). */
export function priceAt(table: PriceTable, ms: number): PriceEntry | undefined {
  let found: PriceEntry | undefined;
  for (const p of table.prices) if (Date.parse(p.effectiveFrom) <= ms) found = p;
  return found;
}

/** The times (ms) at which a price changes. */
export function priceChanges(table: PriceTable): number[] {
  return table.prices.map((p) => Date.parse(p.effectiveFrom));
}

/** What usage costs at `price`. */
export function costOf(
  price: PriceEntry | undefined,
  u: { vcpuSeconds: number; memoryGiBSeconds: number; diskGiBSeconds: number; egressBytes: number },
): number {
  if (!price) return 0;
  return (
    (u.vcpuSeconds / 3600) * price.vcpuHour +
    (u.memoryGiBSeconds / 3600) * price.memoryGiBHour +
    (u.diskGiBSeconds / MONTH_SECONDS) * price.diskGiBMonth +
    (u.egressBytes / GIB) * price.egressGiB
  );
}
