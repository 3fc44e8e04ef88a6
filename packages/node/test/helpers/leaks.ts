import { readdir, readFile } from 'node:fs/promises';

/** Mount points at or under `path`. */
export async function mountsUnder(path: string): Promise<string[]> {
  const mounts = await readFile('/proc/mounts', 'utf8');
  return mounts
    .split('\n')
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => m === path || m.startsWith(`${path}/`));
}

/** Processes (pid and command line) whose command line mentions `text`. */
export async function processesMentioning(text: string): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (cmd.includes(text)) out.push(`${pid} ${cmd.replaceAll('\0', ' ').trim()}`);
  }
  return out;
}

/** Directory entries of `dir` (empty if it does not exist). */
export async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}
