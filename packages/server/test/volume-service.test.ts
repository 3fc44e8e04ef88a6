// Volumes on both databases the server runs on (PGlite, and a PostgreSQL 15 of the test's
// own), with their directories on this host's disk: names unique in a team, another
// team's volume not found, `volumeMounts` resolved (unknown names, bad paths, two at one
// path refused), destroy refused while a sandbox that has not ended mounts it (409 naming
// it) and allowed once it ended, the per-team quota (429) measured from the files.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import type { Database } from '../src/db/database.js';
import { sandboxes } from '../src/db/schema.js';
import { ConflictError, InvalidRequestError, NotFoundError, TeamLimitError } from '../src/services/errors.js';
import { newSandboxRow } from '../src/services/sandbox-rows.js';
import { type Caller, TeamService } from '../src/services/team-service.js';
import { VolumeService } from '../src/services/volume-service.js';
import { BACKENDS, openTestDatabase, type TestDatabase } from './helpers/test-databases.js';

const logger = pino({ level: 'silent' });

for (const backend of BACKENDS)
  describe(`volumes on ${backend}`, () => {
    let db: TestDatabase;
    let home: string;
    let volumes: VolumeService;
    let caller: Caller;
    let other: Caller;

    before(async () => {
      db = await openTestDatabase(backend, 'aiva-volumes-');
      home = await mkdtemp(join(tmpdir(), 'aiva-volumes-home-'));
      const teams = new TeamService(db.database.db);
      const first = await teams.ensureFirstTeam();
      const [key] = await teams.listKeys(first.teamId);
      assert.ok(key);
      caller = { teamId: first.teamId, keyId: key.id, scopes: [] };
      const second = await teams.createTeam(caller, 'second');
      other = { teamId: second.teamId, keyId: 'k2', scopes: [] };
      volumes = new VolumeService(db.database.db, {
        home,
        localNodeId: 'local',
        limits: { quotaBytes: 1000, maxVolumesPerTeam: 5 },
        logger,
      });
    });
    after(async () => {
      await db?.close();
      await rm(home, { recursive: true, force: true });
    });

    /** A sandbox row in `state` that mounts `volumeId` at /data, as a create records it. */
    const sandboxMounting = async (id: string, volumeId: string, state: 'running' | 'paused' | 'killed') => {
      const row = newSandboxRow(
        { id, teamId: caller.teamId, nodeId: 'local', template: 'base', alias: 'base' },
        { templateID: 'base' },
        60,
        new Date(),
      );
      await db.database.db.insert(sandboxes).values({ ...row, state });
      await volumes.recordMounts(db.database.db as Database, id, [{ volumeId, path: '/data' }]);
    };

    test('create, list, get: names unique in a team, another team’s volume not found', async () => {
      const v = await volumes.create(caller, 'data');
      assert.match(v.id, /^vol[a-f0-9]{20}$/);
      const dir = await stat(volumes.dirOf(v.id));
      assert.ok(dir.isDirectory());
      assert.equal(dir.uid, 1000, 'the sandbox’s user owns the volume’s root');
      await assert.rejects(volumes.create(caller, 'data'), ConflictError);
      await assert.rejects(volumes.create(caller, 'no spaces'), InvalidRequestError);
      await assert.rejects(volumes.create(caller, '-dash-first'), InvalidRequestError);
      const theirs = await volumes.create(other, 'data');
      assert.deepEqual(
        (await volumes.list(caller)).map((r) => r.name),
        ['data'],
      );
      assert.equal((await volumes.get(caller, v.id)).token, v.token);
      await assert.rejects(volumes.get(caller, theirs.id), NotFoundError);
      await assert.rejects(volumes.get(caller, 'not-an-id'), NotFoundError);
      assert.equal((await volumes.byToken(v.id, v.token))?.id, v.id);
      assert.equal(await volumes.byToken(v.id, theirs.token), undefined);
      await volumes.destroy(other, theirs.id);
      await volumes.destroy(caller, v.id);
      assert.equal(existsSync(volumes.dirOf(v.id)), false);
      await assert.rejects(volumes.destroy(caller, v.id), NotFoundError);
    });

    test('volumeMounts resolve to the node’s volumes; unknown names and bad paths are refused', async () => {
      const v = await volumes.create(caller, 'mounted');
      const resolved = await volumes.resolveMounts(caller, [{ name: 'mounted', path: '/mnt//data/' }]);
      assert.deepEqual(resolved, { nodeId: 'local', mounts: [{ volumeId: v.id, path: '/mnt/data' }] });
      const refused: [{ name: string; path: string }[], RegExp][] = [
        [[{ name: 'nope', path: '/data' }], /volume "nope" does not exist/],
        [[{ name: 'mounted', path: 'data' }], /is not an absolute path/],
        [[{ name: 'mounted', path: '/' }], /is the root directory/],
        [[{ name: 'mounted', path: '/sys/x' }], /is under/],
        [[{ name: 'mounted', path: '/a/../b' }], /must not contain/],
        [
          [
            { name: 'mounted', path: '/a' },
            { name: 'mounted', path: '/a/' },
          ],
          /two volumes are mounted at \/a/,
        ],
      ];
      for (const [mounts, message] of refused)
        await assert.rejects(volumes.resolveMounts(caller, mounts), (e: unknown) => {
          assert.ok(e instanceof InvalidRequestError, String(e));
          assert.match(e.message, message);
          return true;
        });
      // Another team's volume of that name is not this team's.
      await volumes.create(other, 'theirs');
      await assert.rejects(
        volumes.resolveMounts(caller, [{ name: 'theirs', path: '/t' }]),
        InvalidRequestError,
      );
      await volumes.destroy(caller, v.id);
    });

    test('a volume in use by a sandbox that has not ended cannot be destroyed (409 naming it)', async () => {
      const v = await volumes.create(caller, 'busy');
      await sandboxMounting('sbxrunning1', v.id, 'running');
      await sandboxMounting('sbxpaused1', v.id, 'paused');
      await sandboxMounting('sbxkilled1', v.id, 'killed');
      await assert.rejects(volumes.destroy(caller, v.id), (e: unknown) => {
        assert.ok(e instanceof ConflictError, String(e));
        assert.match(
          e.message,
          /in use by sandboxes (sbxrunning1, sbxpaused1|sbxpaused1, sbxrunning1): kill them/,
        );
        return true;
      });
      assert.ok(existsSync(volumes.dirOf(v.id)), 'a refused destroy removes nothing');
      assert.deepEqual(
        await volumes.mountsOf(['sbxrunning1']),
        new Map([['sbxrunning1', [{ name: 'busy', path: '/data' }]]]),
      );
      for (const id of ['sbxrunning1', 'sbxpaused1'])
        await db.database.db.update(sandboxes).set({ state: 'killed' }).where(eq(sandboxes.id, id));
      await volumes.destroy(caller, v.id);
      assert.equal(existsSync(volumes.dirOf(v.id)), false);
      assert.deepEqual(await volumes.mountsOf(['sbxkilled1']), new Map(), 'its mount rows went with it');
    });

    test('past the team’s quota, creates, mounts and writes are refused (429); removing files frees it', async () => {
      const v = await volumes.create(caller, 'quota');
      await volumes.checkQuota(caller.teamId, 900);
      await assert.rejects(volumes.checkQuota(caller.teamId, 1001), TeamLimitError);
      await writeFile(join(volumes.dirOf(v.id), 'big'), Buffer.alloc(1000));
      await assert.rejects(volumes.create(caller, 'another'), (e: unknown) => {
        assert.ok(e instanceof TeamLimitError);
        assert.equal(e.kind, 'volumes');
        assert.match(e.message, /hold 1000 bytes: past its volume quota of 1000 bytes/);
        return true;
      });
      await assert.rejects(volumes.resolveMounts(caller, [{ name: 'quota', path: '/q' }]), TeamLimitError);
      assert.equal((await volumes.get(caller, v.id)).bytes, 1000, 'the row keeps the measure');
      // The other team's volumes are its own quota.
      await volumes.checkQuota(other.teamId, 10);
      await rm(join(volumes.dirOf(v.id), 'big'));
      await volumes.resolveMounts(caller, [{ name: 'quota', path: '/q' }]);
      await volumes.destroy(caller, v.id);
    });

    test('a team has at most maxVolumesPerTeam volumes; a server without a node of its own has none', async () => {
      const made = [];
      for (let i = 0; i < 5; i++) made.push(await volumes.create(caller, `n${i}`));
      await assert.rejects(volumes.create(caller, 'sixth'), /has 5 volumes, its most \(5\)/);
      for (const v of made) await volumes.destroy(caller, v.id);
      const noNode = new VolumeService(db.database.db, { home, logger });
      await assert.rejects(noNode.create(caller, 'x'), /no node of its own/);
    });
  });
