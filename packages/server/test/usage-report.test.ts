// The usage report on the embedded database (PGlite), from usage records written as the
// meter writes them: groups and totals, a record cut by the range and by midnight, a price
// change mid-range, the per-sandbox minimum, the monthly free tier, the CSV, a team's filter,
// and price tables refused with a reason.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type OpenedDatabase, openDatabase } from '../src/db/database.js';
import { sandboxes, teams, usageRecords } from '../src/db/schema.js';
import { InvalidRequestError } from '../src/services/errors.js';
import { parsePriceTable } from '../src/services/usage-prices.js';
import { UsageReports, usageCsv } from '../src/services/usage-report.js';

const T0 = Date.parse('2026-03-31T23:58:00Z');
const at = (s: number) => new Date(T0 + s * 1000);

/** Two vCPUs, 1 GiB of memory, 2 GiB of disk. */
async function sandbox(
  db: OpenedDatabase['db'],
  id: string,
  teamId: string,
  templateId: string,
  startS: number,
) {
  await db.insert(sandboxes).values({
    id,
    teamId,
    templateId,
    nodeId: 'local',
    state: 'killed',
    cpuCount: 2,
    memoryMb: 1024,
    diskSizeMb: 2048,
    envdVersion: '0.0.1',
    envdAccessToken: 't',
    startedAt: at(startS),
    endAt: at(startS + 3600),
  });
}

/** A record as the meter writes one: allocations × the span. */
async function record(
  db: OpenedDatabase['db'],
  id: string,
  teamId: string,
  state: 'running' | 'paused',
  s: number,
  e: number,
) {
  const secs = e - s;
  const running = state === 'running';
  await db.insert(usageRecords).values({
    sandboxId: id,
    teamId,
    templateId: id.startsWith('a') ? 'tpl-a' : 'tpl-b',
    state,
    intervalStart: at(s),
    intervalEnd: at(e),
    vcpus: 2,
    vcpuSeconds: running ? 2 * secs : 0,
    memoryGibSeconds: running ? secs : 0,
    diskGibSeconds: 2 * secs,
    cpuSeconds: running ? secs / 2 : 0,
    peakMemoryBytes: null,
    egressBytes: null,
  });
}

describe('usage report', () => {
  let dir: string;
  let database: OpenedDatabase;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-usage-'));
    database = await openDatabase({ pgliteDir: join(dir, 'db') });
    const db = database.db;
    await db.insert(teams).values([
      { id: 'team1', name: 'one' },
      { id: 'team2', name: 'two' },
    ]);
    // a1: runs 0–60 s, paused 60–120 s, runs 120–180 s (crossing midnight at 120 s).
    await sandbox(db, 'a1', 'team1', 'tpl-a', 0);
    await record(db, 'a1', 'team1', 'running', 0, 60);
    await record(db, 'a1', 'team1', 'paused', 60, 120);
    await record(db, 'a1', 'team1', 'running', 120, 180);
    // b1: runs 30–90 s.
    await sandbox(db, 'b1', 'team1', 'tpl-b', 30);
    await record(db, 'b1', 'team1', 'running', 30, 90);
    // Another team's.
    await sandbox(db, 'a2', 'team2', 'tpl-a', 0);
    await record(db, 'a2', 'team2', 'running', 0, 60);
  });

  after(async () => {
    await database.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('groups by sandbox, template and day, totals them, and keeps to the team', async () => {
    const reports = new UsageReports(database.db);
    const q = { from: at(-60), to: at(600), teamId: 'team1' };
    const bySandbox = await reports.report({ ...q, groupBy: 'sandbox' });
    assert.deepEqual(
      bySandbox.items.map((i) => [
        i.sandboxID,
        i.vcpus,
        i.vcpuSeconds,
        i.memoryGiBSeconds,
        i.diskGiBSeconds,
        i.cpuSeconds,
      ]),
      [
        ['a1', 2, 240, 120, 360, 60],
        ['b1', 2, 120, 60, 120, 30],
      ],
    );
    assert.equal(bySandbox.total.vcpuSeconds, 360);
    assert.equal(bySandbox.total.diskGiBSeconds, 480);
    assert.ok(bySandbox.items.every((i) => i.teamID === 'team1'));
    const byTemplate = await reports.report({ ...q, groupBy: 'template' });
    assert.deepEqual(
      byTemplate.items.map((i) => [i.templateID, i.vcpuSeconds]),
      [
        ['tpl-a', 240],
        ['tpl-b', 120],
      ],
    );
    const byDay = await reports.report({ ...q, groupBy: 'day' });
    assert.deepEqual(
      byDay.items.map((i) => [i.day, i.vcpuSeconds, i.diskGiBSeconds]),
      [
        ['2026-03-31', 240, 360],
        ['2026-04-01', 120, 120],
      ],
    );
    // Every team's (the operator's view) has the other team's too.
    const all = await reports.report({ from: q.from, to: q.to, groupBy: 'sandbox' });
    assert.deepEqual(all.items.map((i) => `${i.teamID}/${i.sandboxID}`).sort(), [
      'team1/a1',
      'team1/b1',
      'team2/a2',
    ]);
    assert.equal(all.total.vcpuSeconds, 480);
  });

  test('a range cutting records counts only their part within it', async () => {
    const r = await new UsageReports(database.db).report({
      from: at(30),
      to: at(150),
      groupBy: 'sandbox',
      teamId: 'team1',
    });
    // a1: 30 s running, 60 s paused, 30 s running; b1: 60 s running.
    assert.deepEqual(
      r.items.map((i) => [i.sandboxID, i.vcpuSeconds, i.diskGiBSeconds]),
      [
        ['a1', 120, 240],
        ['b1', 120, 120],
      ],
    );
  });

  test('prices apply from their date on; the minimum and the free tier', async () => {
    const prices = parsePriceTable({
      currency: 'EUR',
      prices: [
        { effectiveFrom: '2026-01-01', vcpuHour: 3.6, memoryGiBHour: 0, diskGiBMonth: 0, egressGiB: 0 },
        // From midnight on, a vCPU-hour costs twice as much.
        { effectiveFrom: '2026-04-01T00:00:00Z', vcpuHour: 7.2 },
      ],
    });
    const r = await new UsageReports(database.db, prices).report({
      from: at(-60),
      to: at(600),
      groupBy: 'sandbox',
      teamId: 'team1',
    });
    assert.equal(r.currency, 'EUR');
    // a1: 120 vCPU-s at 0.001/s, 120 at 0.002/s; b1: 120 at 0.001/s.
    assert.deepEqual(
      r.items.map((i) => [i.sandboxID, i.cost]),
      [
        ['a1', 0.36],
        ['b1', 0.12],
      ],
    );
    assert.equal(r.total.cost, 0.48);

    const withMinimum = parsePriceTable({
      prices: [{ effectiveFrom: '2026-01-01', vcpuHour: 3.6, sandboxMinimum: 0.2, freeTierMonthly: 0.05 }],
    });
    const m = await new UsageReports(database.db, withMinimum).report({
      from: at(-60),
      to: at(600),
      groupBy: 'sandbox',
      teamId: 'team1',
    });
    // a1: 0.24 (over the minimum); b1: 0.12 → 0.2. The free tier: 0.05 in each month touched.
    assert.deepEqual(
      m.items.map((i) => [i.sandboxID, i.cost]),
      [
        ['a1', 0.24],
        ['b1', 0.2],
      ],
    );
    assert.equal(m.total.grossCost, 0.44);
    assert.equal(m.total.freeTier, 0.1);
    assert.equal(m.total.cost, 0.34);
  });

  test('CSV has a header, a line per item and the total', async () => {
    const r = await new UsageReports(database.db).report({
      from: at(-60),
      to: at(600),
      groupBy: 'template',
      teamId: 'team1',
    });
    const lines = usageCsv(r).trim().split('\n');
    assert.equal(
      lines[0],
      'teamID,key,vcpus,vcpuSeconds,memoryGiBSeconds,diskGiBSeconds,cpuSeconds,egressBytes,cost',
    );
    assert.equal(lines[1], 'team1,tpl-a,2,240,120,360,60,0,0');
    assert.equal(lines[3], 'total,,,360,180,480,90,0,0');
  });

  test('a bad range and bad price tables are refused', async () => {
    await assert.rejects(
      new UsageReports(database.db).report({ from: at(10), to: at(10), groupBy: 'day' }),
      InvalidRequestError,
    );
    assert.throws(() => parsePriceTable({ prices: [{ effectiveFrom: 'soon' }] }), /effectiveFrom/);
    assert.throws(
      () => parsePriceTable({ prices: [{ effectiveFrom: '2026-01-01', vcpuHour: -1 }] }),
      /vcpuHour/,
    );
    assert.throws(() => parsePriceTable([]), /price table/);
  });
});
