import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCommand } from '@aiva/node';

// A PostgreSQL server of the test's own (Debian's postgresql-15): a cluster in a temporary
// directory, reached on a unix socket only (no TCP).

const BIN = '/usr/lib/postgresql/15/bin';

/** Runs a PostgreSQL tool as the `postgres` user (the server refuses to run as root). */
const asPostgres = (tool: string, args: string[]) =>
  runCommand('runuser', ['-u', 'postgres', '--', join(BIN, tool), ...args]);

export interface PostgresServer {
  /** postgresql://… for database `aiva`, user `aiva`. */
  url: string;
  stop(): Promise<void>;
}

export async function startPostgres(port: number): Promise<PostgresServer> {
  const dir = await mkdtemp(join(tmpdir(), 'aiva-pg-'));
  const { uid, gid } = await runCommand('id', ['-u', 'postgres']).then(async (u) => ({
    uid: Number(u.stdout.trim()),
    gid: Number((await runCommand('id', ['-g', 'postgres'])).stdout.trim()),
  }));
  await chown(dir, uid, gid);
  await chmod(dir, 0o700);
  const data = join(dir, 'data');
  await asPostgres('initdb', ['-D', data, '-U', 'aiva', '-A', 'trust', '--no-sync']);
  await asPostgres('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'server.log'),
    '-o',
    `-k ${dir} -p ${port} -c listen_addresses='' -c max_connections=200`,
    '-w',
    'start',
  ]);
  await asPostgres('createdb', ['-h', dir, '-p', String(port), '-U', 'aiva', 'aiva']);
  return {
    url: `postgresql://aiva@localhost/aiva?host=${encodeURIComponent(dir)}&port=${port}`,
    async stop() {
      await asPostgres('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}
