// `aiva up --database-url` with a real PostgreSQL server (Debian's postgresql-15, a
// cluster of the test's own on a unix socket, no TCP): the migrations run, the SDK works,
// the rows are in PostgreSQL, and a second start on the same database finds them.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Sandbox } from 'e2b';
import pg from 'pg';
import { aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { type PostgresServer, startPostgres } from './helpers/postgres-server.js';

let server: PostgresServer | undefined;
let url = '';

before(async () => {
  server = await startPostgres(54329);
  url = server.url;
});

after(async () => {
  await server?.stop();
});

checkHostLeaks();

test('aiva up on a PostgreSQL server: migrations, the SDK, rows in PostgreSQL, a restart', {
  timeout: 300_000,
}, async (t) => {
  const first = await aivaUp(['--database-url', url]);
  let second: Awaited<ReturnType<typeof aivaUp>> | undefined;
  t.after(async () => {
    await first.crash();
    if (second) assert.equal(await second.stop(), 0, second.output());
    await removeHome(first.home);
  });
  useServer(first);
  const sbx = await Sandbox.create({ metadata: { db: 'postgres' }, timeoutMs: 600_000 });
  await sbx.files.write('/home/user/x.txt', 'in a sandbox');
  const snap = await sbx.createSnapshot({ name: 'pg-snap' });

  const client = new pg.Client({ connectionString: url });
  await client.connect();
  t.after(() => client.end());
  const rows = await client.query('select id, state, metadata from sandboxes');
  assert.deepEqual(rows.rows, [{ id: sbx.sandboxId, state: 'running', metadata: { db: 'postgres' } }]);
  const keys = await client.query('select key_hash from api_keys');
  assert.equal(keys.rows.length, 1);
  assert.match(keys.rows[0].key_hash, /^[0-9a-f]{64}$/, 'the key is stored as its SHA-256 digest');
  assert.notEqual(keys.rows[0].key_hash, first.apiKey);
  const snaps = await client.query('select name from snapshots');
  assert.deepEqual(snaps.rows, [{ name: 'pg-snap' }]);

  // The server dies; a second one on the same database and data directory takes the same
  // key (stored only as a digest in PostgreSQL) and finds the sandbox and the snapshot.
  await first.crash();
  second = await aivaUp(['--database-url', url], { home: first.home });
  useServer(second);
  const again = await Sandbox.connect(sbx.sandboxId);
  assert.equal(await again.files.read('/home/user/x.txt'), 'in a sandbox');
  const copy = await Sandbox.create(snap.snapshotId);
  assert.equal(await copy.files.read('/home/user/x.txt'), 'in a sandbox');
  await copy.kill();
  await again.kill();
  assert.equal(await Sandbox.deleteSnapshot(snap.snapshotId), true);
  const ended = await client.query("select count(*)::int as n from sandboxes where state = 'killed'");
  assert.equal(ended.rows[0].n, 2);
});
