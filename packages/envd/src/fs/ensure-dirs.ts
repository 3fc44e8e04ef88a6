import { chown, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * Creates `dir` and its missing parents (mode 0755) and gives the ones it created to
 * uid:gid, as E2B's envd does; existing directories are left alone.
 */
export async function ensureDirs(dir: string, uid: number, gid: number): Promise<void> {
  const missing: string[] = [];
  let p = dir;
  for (;;) {
    const st = await stat(p).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return undefined;
      throw e;
    });
    if (st) {
      if (!st.isDirectory()) {
        const err: NodeJS.ErrnoException = new Error(`${p} exists and is not a directory`);
        err.code = 'ENOTDIR';
        throw err;
      }
      break;
    }
    missing.unshift(p);
    const up = dirname(p);
    if (up === p) break;
    p = up;
  }
  for (const d of missing) {
    await mkdir(d, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
    await chown(d, uid, gid);
  }
}
