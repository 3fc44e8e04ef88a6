import { readFile } from 'node:fs/promises';

/** Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or undefined if gone. */
export async function processStartTime(pid: number): Promise<number | undefined> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!stat) return undefined;
  // The command name (field 2) is in parentheses and may hold spaces: count from its end.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X') return undefined;
  return Number(fields[19]);
}

/**
 * Waits until each of `pids` is gone from /proc (reaped, not only exited: a zombie
 * still shows as its owner's process), up to `timeoutMs` in all; false if one is not.
 */
export async function waitForReaped(pids: number[], timeoutMs: number): Promise<boolean> {
  const started = async (pid: number) => {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    return stat?.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  };
  const watched = await Promise.all(pids.map(async (pid) => ({ pid, start: await started(pid) })));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = [];
    for (const w of watched) if (w.start !== undefined && (await started(w.pid)) === w.start) left.push(w);
    if (left.length === 0) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Whether `pid` is still the process that started at `startTime` (not a reused pid). */
export async function isSameProcess(pid: number, startTime: number): Promise<boolean> {
  return (await processStartTime(pid)) === startTime;
}

/** Proportional set size of a process in bytes (its fair share of shared pages). */
export async function processPss(pid: number): Promise<number | undefined> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => undefined);
  const kb = rollup && /^Pss:\s+(\d+) kB/m.exec(rollup)?.[1];
  return kb ? Number(kb) * 1024 : undefined;
}

/** Waits until `pid` (started at `startTime`) has exited, up to `timeoutMs`. Returns whether it did. */
export async function waitForExit(pid: number, startTime: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!(await isSameProcess(pid, startTime))) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !(await isSameProcess(pid, startTime));
}

/** Sends `signal` to `pid` if it is still the same process; ignores a process that is gone. */
export async function signalProcess(pid: number, startTime: number, signal: NodeJS.Signals): Promise<void> {
  if (!(await isSameProcess(pid, startTime))) return;
  try {
    process.kill(pid, signal);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
}

/** This process's hard limit on open files: a child cannot be given more. */
export async function openFilesHardLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(limits)?.[1];
  return hard === undefined || hard === 'unlimited' ? 1_048_576 : Number(hard);
}

/**
 * The host CPU's clock in kHz as /proc/cpuinfo reports it ("cpu MHz" of the first CPU):
 * the rate of the TSC that QEMU's TCG guests see. Undefined if not reported.
 */
export async function hostTscKhz(): Promise<number | undefined> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo)?.[1];
  return mhz ? Math.round(Number(mhz) * 1000) : undefined;
}

const CAP_SYS_RESOURCE = 24n;

/**
 * Whether this process may lower an out-of-memory score (CAP_SYS_RESOURCE in its
 * effective set). Some hosts (a container that runs aiva) drop it.
 */
export async function canLowerOomScores(): Promise<boolean> {
  const status = await readFile('/proc/self/status', 'utf8');
  const eff = /^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1];
  return eff !== undefined && ((BigInt(`0x${eff}`) >> CAP_SYS_RESOURCE) & 1n) === 1n;
}
