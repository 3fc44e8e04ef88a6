// A PostgreSQL 15 server of a test's own (a unix socket in a temporary directory, no TCP),
// for tests that run on both databases the server runs on.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const PG_BIN = '/usr/lib/postgresql/15/bin';

const run = (tool: string, args: string[]) =>
  promisify(execFile)('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args]);

/** The databases to test on: PGlite, and PostgreSQL 15 where it is installed. */
export const backends = ['PGlite', ...(existsSync(join(PG_BIN, 'initdb')) ? ['PostgreSQL 15'] : [])];

/** A PostgreSQL server in `dir`, run as the `postgres` user; its URL. */
export async function startPostgres(dir: string): Promise<string> {
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout);
  await chown(dir, await id('-u'), await id('-g'));
  await chmod(dir, 0o700);
  await run('initdb', ['-D', join(dir, 'data'), '-U', 'aiva', '-A', 'trust', '--no-sync']);
  const o = `-k ${dir} -p 5432 -c listen_addresses=''`;
  await run('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-o', o, '-w', 'start']);
  return `postgresql://aiva@localhost/postgres?host=${encodeURIComponent(dir)}&port=5432`;
}

/** Stops the server `startPostgres(dir)` started (quietly, if it is not running). */
export async function stopPostgres(dir: string): Promise<void> {
  await run('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']).catch(() => {});
}
