// Volumes on both databases the server runs on (PGlite, and a PostgreSQL 15 of the test's
// own), with their images made and mounted on this host by the node's `VolumeDisks`:
// names unique in a team, another team's volume not found, `volumeMounts` resolved
// (unknown names, bad paths, two at one path refused), destroy refused while a sandbox
// that has not ended mounts it (409 naming it) and allowed once it ended, the per-team
// quota (429) counting the volumes' sizes, a write into a full volume a StorageFullError.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import type { VolumeDisks } from '@aiva/node';
import { checkHostLeaks } from '@aiva/node/testkit';
import { eq } from 'drizzle-orm';
import { pino } from 'pino';
import type { Database } from '../src/db/database.js';
import { sandboxes } from '../src/db/schema.js';
import {
  ConflictError,
  InvalidRequestError,
  NotFoundError,
  StorageFullError,
  TeamLimitError,
} from '../src/services/errors.js';
import { newSandboxRow } from '../src/services/sandbox-rows.js';
import type { Caller } from '../src/services/team-service.js';
import { VolumeService } from '../src/services/volume-service.js';
import { BACKENDS, type TestDatabase } from './helpers/test-databases.js';
import { openVolumeFixture, type VolumeFixture } from './helpers/volume-fixture.js';

const logger = pino({ level: 'silent' });
const MIB = 1024 * 1024;

// Volume images are loop mounts on this host: none may outlive the file, even when a test fails.
checkHostLeaks();

for (const backend of BACKENDS)
  describe(`volumes on ${backend}`, () => {
    let fixture: VolumeFixture;
    let db: TestDatabase;
    let home: string;
    let volumes: VolumeService;
    let disks: VolumeDisks;
    let caller: Caller;
    let other: Caller;

    before(async () => {
      fixture = await openVolumeFixture(backend, 'aiva-volumes', logger);
      ({ db, home, volumes, disks, caller, other } = fixture);
    });
    after(async () => {
      // Every test destroys what it made: no image is left.
      assert.deepEqual(await fixture?.close(), []);
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
      assert.equal(await disks.isMounted(v.id), true, 'its image is mounted there');
      assert.equal(await volumes.sizeOf(v), 8 * MIB, 'the server’s default size');
      await assert.rejects(volumes.create(caller, 'data'), ConflictError);
      await assert.rejects(volumes.create(caller, 'no spaces'), InvalidRequestError);
      await assert.rejects(volumes.create(caller, '-dash-first'), InvalidRequestError);
      await assert.rejects(volumes.create(caller, 'tiny', 4), /volume size 4 MiB is not valid/);
      await assert.rejects(volumes.create(caller, 'half', 8.5), InvalidRequestError);
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
      assert.equal(existsSync(disks.imageOf(v.id)), false);
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
      const theirs = await volumes.create(other, 'theirs');
      await assert.rejects(
        volumes.resolveMounts(caller, [{ name: 'theirs', path: '/t' }]),
        InvalidRequestError,
      );
      await volumes.destroy(caller, v.id);
      await volumes.destroy(other, theirs.id);
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

    test('the quota counts volumes’ sizes: a create past it is 429 and makes nothing; a full volume refuses writes', async () => {
      const big = await volumes.create(caller, 'quota', 48);
      const small = await volumes.create(caller, 'small');
      await assert.rejects(volumes.create(caller, 'another', 16), (e: unknown) => {
        assert.ok(e instanceof TeamLimitError);
        assert.equal(e.kind, 'volumes');
        assert.match(e.message, /take 56 MiB and a volume of 16 MiB would pass its volume quota of 64 MiB/);
        return true;
      });
      assert.deepEqual(
        (await volumes.list(caller)).map((r) => r.name),
        ['quota', 'small'],
        'a refused create makes no row',
      );
      assert.deepEqual(
        (await readdir(disks.dir)).filter((n) => n.endsWith('.ext4')).length,
        2,
        'nor an image',
      );
      // The other team's volumes are its own quota.
      const theirs = await volumes.create(other, 'theirs', 48);
      // A write past the volume's size: 507's error, and no file left.
      const tree = await volumes.mountedTree(small);
      await assert.rejects(
        tree.writeFile('/fill', Readable.from([Buffer.alloc(4 * MIB), Buffer.alloc(8 * MIB)]), {}),
        (e: unknown) => {
          assert.ok(e instanceof StorageFullError, String(e));
          assert.match(e.message, /the volume is full/);
          return true;
        },
      );
      assert.deepEqual(await tree.list('/', 1), [], 'the refused write left nothing');
      await tree.writeFile('/after', Readable.from([Buffer.from('fits')]), {});
      for (const [c, v] of [
        [caller, big],
        [caller, small],
        [other, theirs],
      ] as const)
        await volumes.destroy(c, v.id);
      await volumes.create(caller, 'fits-now', 56);
      await volumes.destroy(caller, (await volumes.list(caller))[0]?.id ?? '');
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
