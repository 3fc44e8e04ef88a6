import { statfs } from 'node:fs/promises';
import { freemem } from 'node:os';
import type { Sandbox } from 'e2b';

export interface ProbeResult {
  n: number;
  p50: number;
  p99: number;
  max: number;
  errors: string[];
  /** The least memory the host had available while probing, and the least free disk. */
  hostMemoryFreeMin: number;
  hostDiskFreeMin: number;
}

const quantile = (sorted: number[], p: number) =>
  sorted.length === 0
    ? Number.NaN
    : (sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0);

/**
 * A neighbour's steady probe: `commands.run('true')` one after another, timed, while the
 * host's free memory and disk (of `dataDir`) are sampled; `stop()` gives the figures.
 */
export function probeNeighbour(sbx: Sandbox, dataDir: string): { stop(): Promise<ProbeResult> } {
  const times: number[] = [];
  const errors: string[] = [];
  let memMin = Number.POSITIVE_INFINITY;
  let diskMin = Number.POSITIVE_INFINITY;
  let running = true;
  const sample = async () => {
    memMin = Math.min(memMin, freemem());
    const fs = await statfs(dataDir);
    diskMin = Math.min(diskMin, fs.bavail * fs.bsize);
  };
  const loop = (async () => {
    while (running) {
      const t = performance.now();
      try {
        await sbx.commands.run('true', { requestTimeoutMs: 30_000 });
        times.push(performance.now() - t);
      } catch (e) {
        errors.push((e as Error).message);
        times.push(performance.now() - t);
      }
      await sample();
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      const sorted = [...times].sort((a, b) => a - b);
      return {
        n: sorted.length,
        p50: Math.round(quantile(sorted, 0.5)),
        p99: Math.round(quantile(sorted, 0.99)),
        max: Math.round(sorted.at(-1) ?? Number.NaN),
        errors,
        hostMemoryFreeMin: memMin,
        hostDiskFreeMin: diskMin,
      };
    },
  };
}
