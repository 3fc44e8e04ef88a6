// A database with two teams and a volume service whose images are real loop mounts on this
// host, for the tests of volumes and of what is built on them (environments).
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VolumeDisks } from '@aiva/node';
import type { Logger } from 'pino';
import { type Caller, TeamService } from '../../src/services/team-service.js';
import { VolumeService } from '../../src/services/volume-service.js';
import { openTestDatabase, type TestDatabase } from './test-databases.js';

export interface VolumeFixture {
  db: TestDatabase;
  home: string;
  disks: VolumeDisks;
  volumes: VolumeService;
  /** The first (operator) team's key, and a second team's. */
  caller: Caller;
  other: Caller;
  /** Unmounts every image, closes the database, removes the home; answers what images were left. */
  close(): Promise<string[]>;
}

/** Volumes of 8 MiB by default, 64 MiB and 5 volumes per team. */
export async function openVolumeFixture(
  backend: string,
  prefix: string,
  logger: Logger,
): Promise<VolumeFixture> {
  const db = await openTestDatabase(backend, `${prefix}-`);
  const home = await mkdtemp(join(tmpdir(), `${prefix}-home-`));
  const teams = new TeamService(db.database.db);
  const first = await teams.ensureFirstTeam();
  const [key] = await teams.listKeys(first.teamId);
  assert.ok(key);
  const caller = { teamId: first.teamId, keyId: key.id, scopes: [] };
  const second = await teams.createTeam(caller, 'second');
  const disks = new VolumeDisks(home);
  const volumes = new VolumeService(db.database.db, {
    home,
    localNodeId: 'local',
    disks,
    limits: { quotaBytes: 64 * 1024 * 1024, maxVolumesPerTeam: 5, defaultSizeMiB: 8 },
    logger,
  });
  return {
    db,
    home,
    disks,
    volumes,
    caller,
    other: { teamId: second.teamId, keyId: 'k2', scopes: [] },
    async close() {
      const left = await readdir(disks.dir).catch(() => []);
      // Unmounted and removed before anything is asserted, so a failed test leaves no mount.
      await disks.release(new Set());
      await db.close();
      await rm(home, { recursive: true, force: true });
      return left;
    },
  };
}
