import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type OpenedDatabase, openDatabase } from '../../src/db/database.js';

// The two databases the server runs on, for tests: the embedded one (PGlite) and a
// PostgreSQL 15 server of the test's own (a unix socket in a temporary directory, no
// TCP), each migrated as the server migrates it.

const PG_BIN = '/usr/lib/postgresql/15/bin';
const run = promisify(execFile);

/** PGlite always; PostgreSQL 15 where it is installed. */
export const BACKENDS = ['PGlite', ...(existsSync(join(PG_BIN, 'initdb')) ? ['PostgreSQL 15'] : [])];

const pg = (tool: string, args: string[]) =>
  run('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args]);

/** A PostgreSQL server in `dir`, run as the `postgres` user; its URL. */
async function startPostgres(dir: string): Promise<string> {
  const id = async (flag: string) => Number((await run('id', [flag, 'postgres'])).stdout);
  await chown(dir, await id('-u'), await id('-g'));
  await chmod(dir, 0o700);
  await pg('initdb', ['-D', join(dir, 'data'), '-U', 'aiva', '-A', 'trust', '--no-sync']);
  const o = `-k ${dir} -p 5432 -c listen_addresses=''`;
  await pg('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-o', o, '-w', 'start']);
  return `postgresql://aiva@localhost/postgres?host=${encodeURIComponent(dir)}&port=5432`;
}

export interface TestDatabase {
  database: OpenedDatabase;
  /** The URL of the PostgreSQL server, for a second connection; undefined on PGlite. */
  url?: string;
  /** Closes the database, stops its server and removes its directory. */
  close(): Promise<void>;
}

export async function openTestDatabase(backend: string, prefix: string): Promise<TestDatabase> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const url = backend === 'PGlite' ? undefined : await startPostgres(dir);
  const database = await openDatabase({ databaseUrl: url, pgliteDir: dir });
  return {
    database,
    url,
    async close() {
      await database.close();
      if (url) await pg('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
