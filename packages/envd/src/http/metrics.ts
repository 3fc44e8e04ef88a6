import { readFile, statfs } from 'node:fs/promises';
import { cpus } from 'node:os';
import type { EnvdMetrics } from '@aiva/protocol';

interface CpuSample {
  idle: number;
  total: number;
}

async function cpuSample(): Promise<CpuSample> {
  const text = await readFile('/proc/stat', 'utf8');
  const fields = (text.split('\n')[0] ?? '').trim().split(/\s+/).slice(1).map(Number);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  // guest and guest_nice are already counted in user and nice.
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { idle, total };
}

/** The sandbox's CPU, memory and disk, as E2B's envd reports them on GET /metrics. */
export class MetricsSampler {
  private last: CpuSample | undefined;

  async read(): Promise<EnvdMetrics> {
    let now = await cpuSample();
    if (!this.last) {
      // No earlier sample: measure over a short window.
      this.last = now;
      await new Promise((r) => setTimeout(r, 100));
      now = await cpuSample();
    }
    const dTotal = now.total - this.last.total;
    const dIdle = now.idle - this.last.idle;
    this.last = now;
    const cpuUsedPct = dTotal > 0 ? Math.round(((dTotal - dIdle) / dTotal) * 10000) / 100 : 0;

    const meminfo = await readFile('/proc/meminfo', 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(meminfo)?.[1] ?? 0) * 1024;
    const memTotal = kb('MemTotal');
    const memAvailable = kb('MemAvailable');
    const memCache = kb('Cached');
    const memUsed = memTotal - memAvailable;

    const disk = await statfs('/');
    const diskTotal = Number(disk.blocks) * Number(disk.bsize);
    const diskUsed = (Number(disk.blocks) - Number(disk.bfree)) * Number(disk.bsize);

    return {
      ts: Math.floor(Date.now() / 1000),
      cpu_count: cpus().length,
      cpu_used_pct: cpuUsedPct,
      mem_total_mib: Math.floor(memTotal / 1024 / 1024),
      mem_used_mib: Math.floor(memUsed / 1024 / 1024),
      mem_total: memTotal,
      mem_used: memUsed,
      mem_cache: memCache,
      disk_used: diskUsed,
      disk_total: diskTotal,
    };
  }
}
