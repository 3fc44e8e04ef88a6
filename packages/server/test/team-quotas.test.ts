// Teams' quotas on both databases the server runs on (PGlite, and a PostgreSQL 15 of the
// test's own): the operator sets them, others may not; a create past a team's sandboxes,
// vCPUs, memory, disk or creates of the minute is refused with the kind and a Retry-After;
// a timeout past the max lifetime is a 400 naming it; the per-key request bucket lets
// `rate` requests through at once, and on PostgreSQL holds when two connections (two
// server replicas) draw on it at the same time; creates racing on two replicas pass a
// quota one at a time.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { Counter, Registry } from 'prom-client';
import { type OpenedDatabase, openDatabase } from '../src/db/database.js';
import { rateBuckets, sandboxes } from '../src/db/schema.js';
import {
  ForbiddenError,
  InvalidRequestError,
  NotFoundError,
  TeamLimitError,
} from '../src/services/errors.js';
import { TeamQuotas } from '../src/services/team-quotas.js';
import { type Caller, TeamService } from '../src/services/team-service.js';
import { BACKENDS, openTestDatabase, type TestDatabase } from './helpers/test-databases.js';

const DEFAULT_MAX = 20;

for (const backend of BACKENDS)
  describe(`team quotas on ${backend}`, () => {
    let db: TestDatabase;
    let url: string | undefined;
    let database: OpenedDatabase;
    let teams: TeamService;
    let quotas: TeamQuotas;
    let rejections: Counter<'team' | 'kind'>;
    let operator: Caller;

    before(async () => {
      db = await openTestDatabase(backend, 'aiva-quotas-');
      ({ database, url } = db);
      teams = new TeamService(database.db);
      rejections = new Counter({
        name: 'aiva_quota_rejections_total',
        help: 'test',
        labelNames: ['team', 'kind'],
        registers: [new Registry()],
      });
      quotas = new TeamQuotas(database.db, rejections, DEFAULT_MAX);
      const first = await teams.ensureFirstTeam();
      const [key] = await teams.listKeys(first.teamId);
      assert.ok(key);
      operator = { teamId: first.teamId, keyId: key.id, scopes: [] };
    });
    after(async () => {
      await db?.close();
    });

    /** A new team with `quota`, and a caller holding its first key. */
    const teamWith = async (name: string, quota: Parameters<TeamService['createTeam']>[2]) => {
      const { teamId, team } = await teams.createTeam(operator, name, quota);
      const [key] = await teams.listKeys(teamId);
      assert.ok(key);
      return { caller: { teamId, keyId: key.id, scopes: [] }, team };
    };

    let n = 0;
    /** A sandbox row of the team, as a create leaves it. */
    const sandboxRow = (
      teamId: string,
      state: 'running' | 'paused' | 'killed',
      size = 2,
      startedAgoS = 0,
    ) => ({
      id: `sbx_${n++}`,
      teamId,
      templateId: 'base',
      nodeId: 'local',
      state,
      cpuCount: size,
      memoryMb: size * 512,
      diskSizeMb: size * 1024,
      envdVersion: '0.0.1',
      envdAccessToken: 'x',
      startedAt: new Date(Date.now() - startedAgoS * 1000),
      endAt: new Date(Date.now() + 300_000),
    });
    const refusal = (kind: string) => (e: unknown) => {
      assert.ok(e instanceof TeamLimitError, String(e));
      assert.equal(e.kind, kind);
      assert.ok(e.retryAfterS >= 1, `retry after ${e.retryAfterS}`);
      return true;
    };
    const rejected = async (teamId: string, kind: string) =>
      (await rejections.get()).values.find((v) => v.labels.team === teamId && v.labels.kind === kind)
        ?.value ?? 0;

    test('only the operator lists every team and changes quotas; others see their own', async () => {
      const { caller, team } = await teamWith('plain', { maxSandboxes: 3 });
      assert.equal(team.quota.maxSandboxes, 3);
      assert.equal(team.quota.maxVcpus, null);
      const all = await teams.listTeams(operator);
      assert.ok(all.some((t) => t.id === caller.teamId) && all.some((t) => t.operator));
      assert.deepEqual(
        (await teams.listTeams(caller)).map((t) => t.id),
        [caller.teamId],
      );
      await assert.rejects(
        teams.updateTeam(caller, caller.teamId, { quota: { maxSandboxes: 9 } }),
        ForbiddenError,
      );
      await assert.rejects(teams.createTeam(caller, 'x'), ForbiddenError);
      await assert.rejects(
        teams.updateTeam(operator, 'team_nope', { quota: { maxVcpus: 1 } }),
        NotFoundError,
      );
      await assert.rejects(teams.updateTeam(operator, caller.teamId, {}), InvalidRequestError);
      const changed = await teams.updateTeam(operator, caller.teamId, {
        quota: { maxSandboxes: null, maxVcpus: 4 },
      });
      assert.equal(changed.quota.maxSandboxes, null);
      assert.equal(changed.quota.maxVcpus, 4);
    });

    test('a create past the team’s sandboxes, vCPUs, memory or disk is refused, with the kind', async () => {
      const { caller } = await teamWith('sized', { maxSandboxes: 3, maxVcpus: 5, maxMemoryMiB: 3000 });
      const q = await quotas.quota(caller.teamId);
      const none = { vcpus: 0, memoryMiB: 0, diskMiB: 0 };
      await database.db.insert(sandboxes).values([sandboxRow(caller.teamId, 'running')]);
      await quotas.checkCreate(caller, q, 0, { vcpus: 2, memoryMiB: 1024, diskMiB: 0 });
      await assert.rejects(
        quotas.checkCreate(caller, q, 0, { vcpus: 4, memoryMiB: 0, diskMiB: 0 }),
        refusal('vcpus'),
      );
      await assert.rejects(
        quotas.checkCreate(caller, q, 0, { vcpus: 1, memoryMiB: 2048, diskMiB: 0 }),
        refusal('memory'),
      );
      // What the node says a started sandbox takes is checked without the sandbox itself.
      await assert.rejects(
        quotas.checkStarted(caller.teamId, 'sbx_new', { vcpus: 4, memoryMiB: 0, diskMiB: 0 }),
        refusal('vcpus'),
      );
      // A paused sandbox counts as one of the team's, not for vCPUs; a killed one not at all.
      await database.db
        .insert(sandboxes)
        .values([sandboxRow(caller.teamId, 'paused', 8), sandboxRow(caller.teamId, 'killed', 8)]);
      await quotas.checkCreate(caller, q, 0, { vcpus: 3, memoryMiB: 0, diskMiB: 0 });
      await database.db.insert(sandboxes).values([sandboxRow(caller.teamId, 'running', 0)]);
      await assert.rejects(quotas.checkCreate(caller, q, 0, none), (e) => {
        refusal('sandboxes')(e);
        assert.match((e as Error).message, /already runs 3 sandboxes/);
        return true;
      });
      assert.equal(await rejected(caller.teamId, 'sandboxes'), 1);
      assert.equal(await rejected(caller.teamId, 'vcpus'), 2);
      await teams.updateTeam(operator, caller.teamId, { quota: { maxSandboxes: null, maxDiskMiB: 4096 } });
      await assert.rejects(
        quotas.checkCreate(caller, await quotas.quota(caller.teamId), 0, {
          vcpus: 0,
          memoryMiB: 0,
          diskMiB: 1,
        }),
        refusal('disk'),
      );
    });

    test('without a quota of its own, a team has the server’s default cap, counted here or in the database', async () => {
      const { caller } = await teamWith('defaulted', {});
      const q = await quotas.quota(caller.teamId);
      const none = { vcpus: 0, memoryMiB: 0, diskMiB: 0 };
      await quotas.checkCreate(caller, q, DEFAULT_MAX - 1, none);
      await assert.rejects(quotas.checkCreate(caller, q, DEFAULT_MAX, none), refusal('sandboxes'));
    });

    test('creates per minute count the sandboxes started in the last minute, ended ones too', async () => {
      const { caller } = await teamWith('bursty', { createsPerMinute: 2 });
      const none = { vcpus: 0, memoryMiB: 0, diskMiB: 0 };
      await database.db
        .insert(sandboxes)
        .values([sandboxRow(caller.teamId, 'killed', 1, 90), sandboxRow(caller.teamId, 'killed', 1, 50)]);
      const q = await quotas.quota(caller.teamId);
      await quotas.checkCreate(caller, q, 0, none);
      await database.db.insert(sandboxes).values([sandboxRow(caller.teamId, 'killed', 1, 0)]);
      await assert.rejects(quotas.checkCreate(caller, q, 0, none), (e) => {
        refusal('creates')(e);
        // The one started 50 s ago leaves the minute in about 10 s.
        const after = (e as TeamLimitError).retryAfterS;
        assert.ok(after >= 8 && after <= 11, `retry after ${after}`);
        return true;
      });
    });

    test('a timeout past the max lifetime is refused naming it; no timeout is capped to it', async () => {
      const { caller } = await teamWith('short', { maxLifetimeS: 60 });
      const q = await quotas.quota(caller.teamId);
      assert.equal(quotas.timeoutFor(q, undefined, 300), 60);
      assert.equal(quotas.timeoutFor(q, 60, 300), 60);
      assert.throws(() => quotas.timeoutFor(q, 61, 300), /maximum sandbox lifetime of 60s/);
      assert.throws(() => quotas.timeoutFor(q, 61, 300), InvalidRequestError);
      assert.equal(quotas.timeoutFor(await quotas.quota(operator.teamId), 3600, 300), 3600);
    });

    test('the request bucket lets `rate` requests through at once, then refuses until tokens come back', async () => {
      const { caller } = await teamWith('chatty', { requestsPerSecond: 5 });
      const outcomes = [];
      for (let i = 0; i < 8; i++)
        outcomes.push(
          await quotas.takeRequestToken(caller).then(
            () => 'ok',
            (e) => (refusal('requests')(e) ? 'refused' : 'other'),
          ),
        );
      const ok = outcomes.filter((o) => o === 'ok').length;
      // Sequential statements take some ms each: a token may come back meanwhile.
      assert.ok(ok >= 5 && ok <= 6, `${ok} of 8 let through: ${outcomes.join(' ')}`);
      assert.equal(outcomes[7], 'refused');
      await new Promise((r) => setTimeout(r, 1100));
      await quotas.takeRequestToken(caller);
      // A team without a rate has no bucket at all.
      for (let i = 0; i < 20; i++) await quotas.takeRequestToken(operator);
      assert.equal(
        (await database.db.select().from(rateBuckets).where(eq(rateBuckets.keyId, operator.keyId))).length,
        0,
      );
    });

    test('creates racing on two replicas are admitted one after another: no more than the quota', async () => {
      const { caller } = await teamWith('racing', { maxSandboxes: 3 });
      const q = await quotas.quota(caller.teamId);
      // On PostgreSQL a second connection pool, as a second replica has; PGlite has one.
      const other = url ? await openDatabase({ databaseUrl: url, pgliteDir: '/nonexistent' }) : undefined;
      try {
        const replicas = [quotas, new TeamQuotas(other?.db ?? database.db, rejections, DEFAULT_MAX)];
        const none = { vcpus: 0, memoryMiB: 0, diskMiB: 0 };
        const results = await Promise.allSettled(
          replicas.flatMap((r) =>
            Array.from({ length: 6 }, () =>
              r.admitCreate(caller, q, 0, none, async (db) => {
                await db.insert(sandboxes).values(sandboxRow(caller.teamId, 'running'));
              }),
            ),
          ),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 3);
        for (const r of results) if (r.status === 'rejected') refusal('sandboxes')(r.reason);
        // A refused admission leaves no row.
        const rows = await database.db.select().from(sandboxes).where(eq(sandboxes.teamId, caller.teamId));
        assert.equal(rows.length, 3);
      } finally {
        await other?.close();
      }
    });

    if (backend !== 'PGlite')
      test('two replicas drawing on one key’s bucket at once let no more than it holds through', async () => {
        const { caller } = await teamWith('shared', { requestsPerSecond: 10 });
        const other = await openDatabase({ databaseUrl: url, pgliteDir: '/nonexistent' });
        try {
          const replicas = [quotas, new TeamQuotas(other.db, rejections, DEFAULT_MAX)];
          const started = performance.now();
          const results = await Promise.all(
            replicas.flatMap((r) =>
              Array.from({ length: 40 }, () =>
                r.takeRequestToken(caller).then(
                  () => true,
                  () => false,
                ),
              ),
            ),
          );
          const elapsedS = (performance.now() - started) / 1000;
          const ok = results.filter(Boolean).length;
          // 10 at once, and 10 a second back while they ran.
          assert.ok(ok >= 10 && ok <= 10 + Math.ceil(elapsedS * 10), `${ok} of 80 in ${elapsedS} s`);
        } finally {
          await other.close();
        }
      });
  });
