// Scoped, expiring API keys and the append-only audit log, on both databases the server
// runs on: a key keeps its scopes and expiry, an expired key is refused, `lastUsedAt` is
// written once however often the key is used, a scoped key cannot make a wider one; the
// audit log pages newest first and filters, keeps teams apart, and the database itself
// refuses UPDATE, DELETE and TRUNCATE on it.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eq, sql } from 'drizzle-orm';
import { apiKeys, auditLog } from '../src/db/schema.js';
import { AuditLog, type AuditRecord } from '../src/services/audit-log.js';
import { ForbiddenError, InvalidRequestError, UnauthorizedError } from '../src/services/errors.js';
import { TeamService } from '../src/services/team-service.js';
import { BACKENDS, openTestDatabase, type TestDatabase } from './helpers/test-databases.js';

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

for (const backend of BACKENDS)
  describe(`keys and audit log on ${backend}`, () => {
    let testDb: TestDatabase;
    let teams: TeamService;
    let audit: AuditLog;
    let teamId: string;

    before(async () => {
      testDb = await openTestDatabase(backend, 'aiva-keys-audit-');
      teams = new TeamService(testDb.database.db);
      audit = new AuditLog(testDb.database.db);
      teamId = (await teams.ensureFirstTeam()).teamId;
    });
    after(async () => testDb?.close());

    const lastUsed = async (id: string) =>
      (await testDb.database.db.select().from(apiKeys).where(eq(apiKeys.id, id)))[0]?.lastUsedAt ?? undefined;

    test('a key keeps its scopes and expiry; the listing shows them', async () => {
      const { key, info } = await teams.createKey(teamId, {
        name: 'ci',
        scopes: ['read-only', 'sandboxes', 'read-only'],
        expiresInSeconds: 3600,
      });
      assert.deepEqual(info.scopes, ['read-only', 'sandboxes']);
      const expiresIn = Date.parse(info.expiresAt ?? '') - Date.now();
      assert.ok(expiresIn > 3590_000 && expiresIn <= 3600_000, `expires in ${expiresIn} ms`);
      const caller = await teams.authenticate(key);
      assert.deepEqual(caller, { teamId, keyId: info.id, scopes: ['read-only', 'sandboxes'] });
      const listed = (await teams.listKeys(teamId)).find((k) => k.id === info.id);
      assert.deepEqual(listed?.scopes, ['read-only', 'sandboxes']);
      assert.equal(listed?.expiresAt, info.expiresAt);
      const full = await teams.createKey(teamId, { name: 'full' });
      assert.deepEqual(full.info.scopes, []);
      assert.equal(full.info.expiresAt, null);
    });

    test('an expired key is refused with "API key expired", also once it was trusted', async () => {
      const { key } = await teams.createKey(teamId, { name: 'short', expiresInSeconds: 1 });
      assert.ok(await teams.authenticate(key), 'fresh key accepted');
      await sleep(1100);
      await assert.rejects(teams.authenticate(key), (e: Error) => {
        assert.ok(e instanceof UnauthorizedError);
        assert.equal(e.message, 'API key expired');
        return true;
      });
      // A server that never saw it refuses it too.
      await assert.rejects(new TeamService(testDb.database.db).authenticate(key), /API key expired/);
    });

    test('lastUsedAt is written on first use, then not again within the minute', async () => {
      const { key, info } = await teams.createKey(teamId, { name: 'used' });
      assert.equal(info.lastUsedAt, null);
      await teams.authenticate(key);
      const first = await until('lastUsedAt', () => lastUsed(info.id));
      for (let i = 0; i < 5; i++) await teams.authenticate(key);
      await sleep(300);
      assert.equal((await lastUsed(info.id))?.getTime(), first.getTime());
      assert.equal(
        (await teams.listKeys(teamId)).find((k) => k.id === info.id)?.lastUsedAt,
        first.toISOString(),
      );
    });

    test('a scoped key may only make keys with some of its own scopes', async () => {
      const by = { teamId, keyId: 'key_x', scopes: ['sandboxes', 'read-only'] as const };
      const made = await teams.createKey(
        teamId,
        { name: 'narrower', scopes: ['read-only'] },
        { ...by, scopes: [...by.scopes] },
      );
      assert.deepEqual(made.info.scopes, ['read-only']);
      for (const scopes of [[], ['admin'], ['sandboxes', 'templates']] as const)
        await assert.rejects(
          teams.createKey(teamId, { name: 'wider', scopes: [...scopes] }, { ...by, scopes: [...by.scopes] }),
          ForbiddenError,
        );
    });

    const record = (over: Partial<AuditRecord>): AuditRecord => ({
      keyId: 'key_a',
      teamId: 'team_a',
      action: 'sandbox.create',
      method: 'POST',
      route: '/sandboxes',
      targets: [],
      status: 201,
      clientAddress: '127.0.0.1',
      ...over,
    });

    test('the audit log pages newest first, filters by action and target, keeps teams apart', async () => {
      for (let i = 0; i < 5; i++) await audit.append(record({ targets: [`sbx_${i}`] }));
      await audit.append(
        record({ action: 'sandbox.kill', method: 'DELETE', targets: ['sbx_1'], status: 404 }),
      );
      await audit.append(record({ teamId: 'team_b', targets: ['sbx_b'] }));

      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await audit.list('team_a', { limit: 2, cursor });
        assert.ok(page.entries.length <= 2);
        seen.push(...page.entries.map((e) => e.targets.join()));
        cursor = page.nextToken;
        pages++;
      } while (cursor);
      assert.equal(pages, 3);
      assert.deepEqual(seen, ['sbx_1', 'sbx_4', 'sbx_3', 'sbx_2', 'sbx_1', 'sbx_0']);

      const kills = await audit.list('team_a', { action: 'sandbox.kill' });
      assert.equal(kills.entries.length, 1);
      assert.equal(kills.entries[0]?.result, 'error');
      assert.equal(kills.entries[0]?.status, 404);
      const one = await audit.list('team_a', { target: 'sbx_1' });
      assert.deepEqual(
        one.entries.map((e) => e.action),
        ['sandbox.kill', 'sandbox.create'],
      );
      assert.deepEqual((await audit.list('team_a', { target: 'sbx_b' })).entries, []);
      assert.equal((await audit.list(undefined, { target: 'sbx_b' })).entries[0]?.teamId, 'team_b');
      await assert.rejects(audit.list('team_a', { cursor: 'nonsense' }), InvalidRequestError);
    });

    test('calls appended within one millisecond still list in the order they were made', async () => {
      const made = Array.from({ length: 40 }, (_, i) => `burst_${i}`);
      for (const t of made) await audit.append(record({ teamId: 'team_burst', targets: [t] }));
      const listed = (await audit.list('team_burst', { limit: 100 })).entries.map((e) => e.targets[0]);
      assert.deepEqual(listed, [...made].reverse());
    });

    test('the database refuses UPDATE, DELETE and TRUNCATE on the audit log', async () => {
      await audit.append(record({ targets: ['sbx_keep'] }));
      const db = testDb.database.db;
      const before = await db.select().from(auditLog);
      // Drizzle wraps the database's error: its cause is what PostgreSQL said.
      const refused = (op: string) => (e: Error) => {
        assert.match(
          String((e.cause as Error | undefined)?.message),
          new RegExp(`append-only: ${op} refused`),
        );
        return true;
      };
      await assert.rejects(db.update(auditLog).set({ status: 200 }), refused('UPDATE'));
      await assert.rejects(db.delete(auditLog).where(eq(auditLog.teamId, 'team_a')), refused('DELETE'));
      await assert.rejects(db.execute(sql`TRUNCATE audit_log`), refused('TRUNCATE'));
      assert.deepEqual(await db.select().from(auditLog), before);
    });
  });
