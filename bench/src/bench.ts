/** One benchmark: a named module that measures something and returns rows of results. */
export interface Benchmark {
  name: string;
  description: string;
  run(): Promise<BenchResult>;
}

export interface BenchRow {
  metric: string;
  value: number;
  unit: string;
  /** How it was measured (sample size, sizes, …). */
  detail?: string;
}

export interface BenchResult {
  rows: BenchRow[];
  /** Facts about the environment the figures depend on. */
  environment?: Record<string, string | number>;
  /** What the figures do not show, or could not measure, and why. */
  notes?: string[];
}

/** The q-quantile (0..1) of sorted samples, by nearest rank. */
export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}
