import { join } from 'node:path';
import { dataDir } from '@aiva/node';
import { isScope, type NewKey, openDatabase, SCOPES, TeamService } from '@aiva/server';
import { type Command, InvalidArgumentError } from 'commander';
import { formatTable } from '../table.js';
import { parseDuration } from './node.js';
import { readCredentials } from './up.js';

interface KeyInfo {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  lastUsedAt: string | null;
  expiresAt: string | null;
  scopes: string[];
}

interface KeyStore {
  list(): Promise<KeyInfo[]>;
  create(spec: NewKey): Promise<{ key: string; info: KeyInfo }>;
  remove(id: string): Promise<void>;
  close(): Promise<void>;
}

/** Through the running server's API (its database is in use), with the key `aiva up` wrote. */
async function viaServer(): Promise<KeyStore | undefined> {
  const c = await readCredentials();
  if (!c) return undefined;
  const up = await fetch(`${c.apiUrl}/health`, { signal: AbortSignal.timeout(1000) }).then(
    (r) => r.ok,
    () => false,
  );
  if (!up) return undefined;
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${c.apiUrl}${path}`, {
      method,
      headers: { 'x-api-key': c.apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await r.text();
    if (!r.ok)
      throw new Error((JSON.parse(text || '{}') as { message?: string }).message ?? `HTTP ${r.status}`);
    return text ? JSON.parse(text) : undefined;
  };
  return {
    list: () => call('GET', '/v1/keys'),
    create: (spec) => call('POST', '/v1/keys', spec),
    remove: async (id) => void (await call('DELETE', `/v1/keys/${encodeURIComponent(id)}`)),
    close: async () => {},
  };
}

/** Straight in the database, when no server runs (the first team's keys). */
async function viaDatabase(databaseUrl?: string): Promise<KeyStore> {
  const d = await openDatabase({ databaseUrl, pgliteDir: join(dataDir(), 'db') });
  const teams = new TeamService(d.db);
  // The first team and its key are made by the server's first start, which shows the key
  // and keeps it in credentials.json: made here, that key would be lost.
  const teamId = await teams.firstTeam();
  if (!teamId) {
    await d.close();
    throw new Error(
      'there is no team yet: start the server once (npm start) to make the first team and its key',
    );
  }
  return {
    list: () => teams.listKeys(teamId),
    create: (spec) => teams.createKey(teamId, spec),
    remove: async (id) => {
      if (!(await teams.removeKey(teamId, id))) throw new Error(`key ${id} not found`);
    },
    close: () => d.close(),
  };
}

async function withKeys<T>(opts: { databaseUrl?: string }, fn: (k: KeyStore) => Promise<T>): Promise<T> {
  const store = (await viaServer()) ?? (await viaDatabase(opts.databaseUrl));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

export function registerKeyCommands(program: Command): void {
  const keys = program
    .command('keys')
    .description('API keys of the team (through the running server, or its database when none runs)')
    .option('--database-url <url>', 'the PostgreSQL server aiva up uses, if not the embedded database');

  keys
    .command('ls')
    .description('list API keys (their prefixes: keys are stored hashed; last used is updated once a minute)')
    .option('--json', 'print JSON')
    .action(async (_o, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{ json?: boolean; databaseUrl?: string }>();
      const list = await withKeys(opts, (k) => k.list());
      if (opts.json) {
        console.log(JSON.stringify(list, null, 2));
        return;
      }
      console.log(
        formatTable(
          ['id', 'name', 'key', 'scopes', 'created', 'expires', 'last used'],
          list.map((k) => [
            k.id,
            k.name,
            k.prefix,
            k.scopes.length ? k.scopes.join(',') : 'all',
            k.createdAt,
            k.expiresAt ?? 'never',
            k.lastUsedAt ?? '-',
          ]),
        ),
      );
    });

  keys
    .command('create')
    .description('create an API key and print it (it is not shown again)')
    .argument('<name>')
    .option('--expires-in <duration>', 'refuse it after this long: 90s, 15m, 24h, 30d, 2w (default: never)')
    .option(
      '--scope <scope>',
      `what it may do, repeatable: ${SCOPES.join(', ')} (default: everything the team may)`,
      (value: string, previous: string[] = []) => {
        if (!isScope(value)) throw new InvalidArgumentError(`expected one of ${SCOPES.join(', ')}`);
        return [...previous, value];
      },
    )
    .action(async (name: string, _o, cmd: Command) => {
      const opts = cmd.optsWithGlobals<{
        expiresIn?: string;
        scope?: NewKey['scopes'];
        databaseUrl?: string;
      }>();
      const spec: NewKey = {
        name,
        ...(opts.scope ? { scopes: opts.scope } : {}),
        ...(opts.expiresIn === undefined ? {} : { expiresInSeconds: parseDuration(opts.expiresIn) }),
      };
      const { key, info } = await withKeys(opts, (k) => k.create(spec));
      process.stderr.write(`created key ${info.id} (${info.name}); it is not shown again:\n`);
      console.log(key);
    });

  keys
    .command('rm')
    .description('remove API keys by id')
    .argument('<id...>')
    .action(async (ids: string[], _o, cmd: Command) => {
      await withKeys(cmd.optsWithGlobals(), async (k) => {
        for (const id of ids) {
          await k.remove(id);
          console.log(`removed ${id}`);
        }
      });
    });
}
