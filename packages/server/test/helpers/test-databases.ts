// The databases the server runs on, for service tests: the embedded one (PGlite) and a
// PostgreSQL 15 server of the test's own (a unix socket in a temporary directory, no
// TCP), each migrated as the server migrates it.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type OpenedDatabase, openDatabase } from '../../src/db/database.js';

const PG_BIN = '/usr/lib/postgresql/15/bin';

/** PGlite always; PostgreSQL 15 where it is installed. */
export const backends = ['PGlite', ...(existsSync(join(PG_BIN, 'initdb')) ? ['PostgreSQL 15'] : [])];

const pgTool = (tool: string, args: string[]) =>
  promisify(execFile)('runuser', ['-u', 'postgres', '--', join(PG_BIN, tool), ...args]);

/** A PostgreSQL server in `dir`, run as the `postgres` user; its URL. */
async function startPostgres(dir: string): Promise<string> {
  const id = async (flag: string) => Number((await promisify(execFile)('id', [flag, 'postgres'])).stdout);
  await chown(dir, await id('-u'), await id('-g'));
  await chmod(dir, 0o700);
  await pgTool('initdb', ['-D', join(dir, 'data'), '-U', 'aiva', '-A', 'trust', '--no-sync']);
  const o = `-k ${dir} -p 5432 -c listen_addresses=''`;
  await pgTool('pg_ctl', ['-D', join(dir, 'data'), '-l', join(dir, 'log'), '-o', o, '-w', 'start']);
  return `postgresql://aiva@localhost/postgres?host=${encodeURIComponent(dir)}&port=5432`;
}

export interface TestDatabase {
  database: OpenedDatabase;
  /** Closes the database, stops its server if any and removes its directory. */
  close(): Promise<void>;
}

/** A migrated, empty database of `backend` (one of `backends`) in a new temporary directory. */
export async function openTestDatabase(backend: string, name: string): Promise<TestDatabase> {
  const dir = await mkdtemp(join(tmpdir(), `aiva-${name}-`));
  const postgres = backend !== 'PGlite';
  const database = postgres
    ? await openDatabase({ databaseUrl: await startPostgres(dir), pgliteDir: dir })
    : await openDatabase({ pgliteDir: dir });
  return {
    database,
    async close() {
      await database.close();
      if (postgres)
        await pgTool('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
