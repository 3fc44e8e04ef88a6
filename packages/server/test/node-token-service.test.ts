// Node join tokens on both databases the server runs on — the embedded one (PGlite) and a
// PostgreSQL 15 server of the test's own (a unix socket in a temporary directory, no TCP),
// each migrated as the server migrates it: only their digests are stored, a listing holds
// no secret, and revoked, expired, unknown and malformed tokens are refused, each with its
// reason.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq, sql } from 'drizzle-orm';
import { type OpenedDatabase, openDatabase } from '../src/db/database.js';
import { nodeTokens } from '../src/db/schema.js';
import { InvalidRequestError } from '../src/services/errors.js';
import { hashNodeToken, NODE_TOKEN_PATTERN, NodeTokenService } from '../src/services/node-token-service.js';
import { backends, startPostgres, stopPostgres } from './helpers/postgres.js';

for (const backend of backends)
  describe(`node tokens on ${backend}`, () => {
    let dir: string;
    let database: OpenedDatabase;
    let tokens: NodeTokenService;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'aiva-node-tokens-'));
      database =
        backend === 'PGlite'
          ? await openDatabase({ pgliteDir: dir })
          : await openDatabase({ databaseUrl: await startPostgres(dir), pgliteDir: dir });
      tokens = new NodeTokenService(database.db);
    });
    after(async () => {
      await database?.close();
      if (backend !== 'PGlite') await stopPostgres(dir);
      await rm(dir, { recursive: true, force: true });
    });

    const rowOf = async (id: string) => {
      const [row] = await database.db.select().from(nodeTokens).where(eq(nodeTokens.id, id));
      assert.ok(row, `no row for ${id}`);
      return row;
    };

    test('a token is stored as its sha256 only, and the listing holds no secret', async () => {
      const { token, info } = await tokens.create({
        name: 'rack 1',
        createdBy: { teamId: 'team_x', keyId: 'key_y' },
      });
      assert.match(token, NODE_TOKEN_PATTERN);
      assert.equal(info.state, 'active');
      assert.equal(info.expiresAt, null);
      assert.equal(info.createdByTeam, 'team_x');
      assert.equal(info.createdByKey, 'key_y');
      const secret = token.slice('aiva_join_'.length);

      const row = await rowOf(info.id);
      assert.equal(row.tokenHash, hashNodeToken(token));
      assert.match(row.tokenHash, /^[0-9a-f]{64}$/);
      const stored = JSON.stringify(row);
      assert.ok(!stored.includes(token), 'the token is in its row');
      assert.ok(!stored.includes(secret.slice(8)), 'the token’s secret is in its row');
      // Nor anywhere in the table, read as text by the database itself.
      const all = await database.db.execute(sql`select row_to_json(t)::text as j from node_tokens t`);
      const rows = (all as unknown as { rows: { j: string }[] }).rows;
      assert.ok(rows.length > 0 && rows.every((r) => !r.j.includes(secret.slice(8))));

      const listed = await tokens.list();
      const mine = listed.find((t) => t.id === info.id);
      assert.deepEqual(mine, info);
      assert.ok(!JSON.stringify(listed).includes(secret.slice(8)), 'the listing holds the secret');
      assert.deepEqual(Object.keys(info).sort(), [
        'createdAt',
        'createdByKey',
        'createdByTeam',
        'expiresAt',
        'id',
        'lastUsedAt',
        'name',
        'prefix',
        'revokedAt',
        'state',
      ]);
    });

    test('verify accepts an active token and records its use', async () => {
      const { token, info } = await tokens.create({ name: 'n' });
      assert.equal(info.lastUsedAt, null);
      const verified = await tokens.verify(token);
      assert.equal(verified?.id, info.id);
      assert.ok(verified?.lastUsedAt, 'last use not recorded');
      assert.ok((await rowOf(info.id)).lastUsedAt);
    });

    test('a revoked token is refused, and leaves the listing', async () => {
      const { token, info } = await tokens.create({ name: 'to revoke' });
      assert.equal(await tokens.revoke(info.id), true);
      assert.equal(await tokens.revoke(info.id), false, 'revoked twice');
      assert.equal(await tokens.revoke('nt_nosuchtoken'), false);
      assert.equal(await tokens.verify(token), undefined);
      assert.deepEqual(await tokens.check(token), { ok: false, reason: 'revoked', tokenId: info.id });
      assert.equal((await rowOf(info.id)).lastUsedAt, null, 'a refused token counts as used');
      assert.ok(!(await tokens.list()).some((t) => t.id === info.id));
      const withRevoked = await tokens.list({ revoked: true });
      assert.equal(withRevoked.find((t) => t.id === info.id)?.state, 'revoked');
    });

    test('an expired token is refused, and listed as expired', async () => {
      const { token, info } = await tokens.create({ name: 'short', expiresInSeconds: 3600 });
      assert.ok(info.expiresAt);
      const expiresIn = Date.parse(info.expiresAt) - Date.now();
      assert.ok(expiresIn > 3500_000 && expiresIn <= 3600_000, `expires in ${expiresIn} ms`);
      assert.equal((await tokens.verify(token))?.id, info.id, 'refused before it expired');
      await database.db
        .update(nodeTokens)
        .set({ expiresAt: sql`now() - interval '1 second'` })
        .where(eq(nodeTokens.id, info.id));
      assert.equal(await tokens.verify(token), undefined);
      assert.deepEqual(await tokens.check(token), { ok: false, reason: 'expired', tokenId: info.id });
      assert.equal((await tokens.list()).find((t) => t.id === info.id)?.state, 'expired');
    });

    test('unknown and malformed tokens are refused', async () => {
      await tokens.create({});
      assert.deepEqual(await tokens.check(`aiva_join_${'0'.repeat(64)}`), { ok: false, reason: 'unknown' });
      for (const bad of ['', 'aiva_join_', `aiva_join_${'A'.repeat(64)}`, `e2b_${'0'.repeat(40)}`])
        assert.deepEqual(await tokens.check(bad), { ok: false, reason: 'malformed' }, bad);
    });

    test('a lifetime out of range is refused and nothing is stored', async () => {
      const before = (await tokens.list({ revoked: true })).length;
      for (const s of [0, -1, 1.5, 20 * 365 * 24 * 3600])
        await assert.rejects(tokens.create({ name: 'bad', expiresInSeconds: s }), InvalidRequestError);
      assert.equal((await tokens.list({ revoked: true })).length, before);
    });
  });
