// The usage meter on the embedded database (PGlite) and the real live index: records that
// follow one another with no gap or overlap, a paused span metered as paused, a final
// partial record at the end, a second writer from the same start dropped (no double
// counting), a new meter (a restart) going on from the last record, a sandbox that
// ended while none ran getting its final span, and egress bytes from the node's cumulative
// counter: the rise per record, never negative, none while paused.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { asc, eq } from 'drizzle-orm';
import pino from 'pino';
import { Counter, Gauge, Registry } from 'prom-client';
import { type OpenedDatabase, openDatabase } from '../src/db/database.js';
import { sandboxes, teams, usageRecords } from '../src/db/schema.js';
import { LiveSandboxes, liveFromRow } from '../src/services/live-sandboxes.js';
import type { UsageSample } from '../src/services/sandbox-metrics.js';
import { egressSince, UsageMeter } from '../src/services/usage-meter.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = pino({ level: 'silent' });

describe('usage meter', () => {
  let dir: string;
  let database: OpenedDatabase;
  let live: LiveSandboxes;
  const registry = new Registry();
  const counters = {
    vcpuSeconds: new Counter({ name: 'v', help: 'v', labelNames: ['team'], registers: [registry] }),
    memoryGibSeconds: new Counter({ name: 'm', help: 'm', labelNames: ['team'], registers: [registry] }),
    egressBytes: new Counter({ name: 'e', help: 'e', labelNames: ['team'], registers: [registry] }),
  };
  const meterOf = () =>
    new UsageMeter(database.db, { live: () => live.values(), samples: () => [] }, counters, log, 3_600_000);

  const records = (id: string) =>
    database.db
      .select()
      .from(usageRecords)
      .where(eq(usageRecords.sandboxId, id))
      .orderBy(asc(usageRecords.intervalStart));

  async function addSandbox(id: string, startedAt: Date) {
    const [row] = await database.db
      .insert(sandboxes)
      .values({
        id,
        teamId: 'team1',
        templateId: 'base',
        nodeId: 'local',
        state: 'running',
        cpuCount: 2,
        memoryMb: 512,
        diskSizeMb: 1024,
        envdVersion: '0.0.1',
        envdAccessToken: 't',
        startedAt,
        endAt: new Date(Date.now() + 3_600_000),
      })
      .returning();
    if (!row) throw new Error('no row');
    live.add(liveFromRow(row, 'running'));
  }

  /** Each record starts where the one before ended. */
  function assertContiguous(rs: { intervalStart: Date; intervalEnd: Date }[]) {
    for (let i = 1; i < rs.length; i++)
      assert.equal(rs[i]?.intervalStart.getTime(), rs[i - 1]?.intervalEnd.getTime(), `record ${i}`);
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-meter-'));
    database = await openDatabase({ pgliteDir: join(dir, 'db') });
    await database.db.insert(teams).values({ id: 'team1', name: 'one' });
    live = new LiveSandboxes(
      { maxSandboxes: 10, memoryBudgetMiB: 10_000, maxSandboxesPerTeam: 10 },
      new Gauge({ name: 'g', help: 'g', labelNames: ['state'], registers: [registry] }),
    );
  });

  after(async () => {
    await database.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('running, paused and ended spans, each from the last one’s end', async () => {
    const startedAt = new Date(Date.now() - 1000);
    await addSandbox('s1', startedAt);
    const meter = meterOf();
    meter.start();
    await meter.tick();
    await sleep(200);
    // It pauses: the running span closes.
    const s = live.get('s1');
    assert.ok(s);
    meter.close('s1', 'running');
    s.state = 'paused';
    await sleep(300);
    await meter.tick();
    s.state = 'running';
    meter.close('s1', 'paused');
    await sleep(100);
    meter.close('s1', 'running', true);
    live.remove('s1');
    await meter.stop();
    const rs = await records('s1');
    assert.deepEqual(
      rs.map((r) => r.state),
      ['running', 'running', 'paused', 'paused', 'running'],
    );
    assert.equal(rs[0]?.intervalStart.getTime(), startedAt.getTime(), 'the first record starts at its start');
    assertContiguous(rs);
    for (const r of rs) {
      const secs = (r.intervalEnd.getTime() - r.intervalStart.getTime()) / 1000;
      const running = r.state === 'running';
      assert.equal(r.vcpus, 2);
      assert.ok(Math.abs(r.vcpuSeconds - (running ? 2 * secs : 0)) < 1e-9);
      assert.ok(Math.abs(r.memoryGibSeconds - (running ? 0.5 * secs : 0)) < 1e-9);
      assert.ok(Math.abs(r.diskGibSeconds - secs) < 1e-9, 'disk counts paused too');
      // No samples: not measured while running; a paused sandbox sends nothing.
      assert.equal(r.egressBytes, running ? null : 0);
    }
    const counted = (await counters.vcpuSeconds.get()).values.find((v) => v.labels.team === 'team1')?.value;
    const sum = rs.reduce((a, r) => a + r.vcpuSeconds, 0);
    assert.ok(
      counted !== undefined && Math.abs(counted - sum) < 1e-9,
      'the Prometheus counter adds the same',
    );
  });

  test('two meters from the same start write once; a new meter goes on from the last record', async () => {
    await addSandbox('s2', new Date(Date.now() - 500));
    const a = meterOf();
    const b = meterOf();
    a.start();
    b.start();
    await Promise.all([a.tick(), b.tick()]);
    let rs = await records('s2');
    assert.equal(rs.length, 1, 'the second writer’s record from the same start was dropped');
    await a.stop();
    await b.stop();
    await sleep(200);
    // A restart: a new meter, knowing nothing, reads where the records end.
    const c = meterOf();
    c.start();
    await c.tick();
    await c.stop();
    rs = await records('s2');
    assert.equal(rs.length, 2);
    assertContiguous(rs);
    live.remove('s2');
  });

  test('a sandbox that ended while no meter ran gets its final span at the next start', async () => {
    await addSandbox('s3', new Date(Date.now() - 500));
    const a = meterOf();
    a.start();
    await a.tick();
    await a.stop();
    live.remove('s3');
    const endedAt = new Date(Date.now() + 50);
    await database.db.update(sandboxes).set({ state: 'killed', endedAt }).where(eq(sandboxes.id, 's3'));
    const b = meterOf();
    b.start();
    await sleep(300);
    await b.stop();
    const rs = await records('s3');
    assert.equal(rs.length, 2);
    assertContiguous(rs);
    assert.equal(rs[1]?.intervalEnd.getTime(), endedAt.getTime());
    // Nothing more once it is recorded to its end.
    const c = meterOf();
    c.start();
    await sleep(200);
    await c.stop();
    assert.equal((await records('s3')).length, 2);
  });
});

/** A sample taken at `atMs` whose egress counter read `egressBytes` (undefined: no counter). */
function sample(atMs: number, egressBytes?: number): UsageSample {
  return {
    timestamp: new Date(atMs).toISOString(),
    timestampUnix: Math.floor(atMs / 1000),
    cpuCount: 2,
    cpuUsedPct: 0,
    memUsed: 1,
    memTotal: 2,
    memCache: 0,
    diskUsed: 1,
    diskTotal: 2,
    ...(egressBytes !== undefined ? { egressBytes } : {}),
  };
}

describe('egress bytes from the cumulative counter', () => {
  test('the counter’s rises after the last reading counted; a lower reading counts from 0', () => {
    const samples = [sample(1000, 100), sample(2000, 250), sample(3000, 40), sample(4000, 90)];
    assert.deepEqual(egressSince({ atMs: 0, bytes: 0 }, samples), {
      bytes: 250 + 40 + 50,
      last: { atMs: 4000, bytes: 90 },
    });
    assert.deepEqual(egressSince({ atMs: 2000, bytes: 250 }, samples), {
      bytes: 40 + 50,
      last: { atMs: 4000, bytes: 90 },
    });
    assert.deepEqual(egressSince({ atMs: 4000, bytes: 90 }, samples), {
      bytes: 0,
      last: { atMs: 4000, bytes: 90 },
    });
    // Nothing known before: counting starts at the first reading.
    assert.deepEqual(egressSince(undefined, samples.slice(0, 2)), {
      bytes: 150,
      last: { atMs: 2000, bytes: 250 },
    });
    // A node that keeps no counter: not measured.
    assert.deepEqual(egressSince({ atMs: 0, bytes: 0 }, [sample(1000)]), {
      bytes: null,
      last: { atMs: 0, bytes: 0 },
    });
  });

  test('the meter records each span’s rise: from 0 for a new sandbox, 0 while paused, after a restart from where its records counted to', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'aiva-meter-egress-'));
    const database = await openDatabase({ pgliteDir: join(dir, 'db') });
    try {
      await database.db.insert(teams).values({ id: 'team1', name: 'one' });
      const registry = new Registry();
      const live = new LiveSandboxes(
        { maxSandboxes: 10, memoryBudgetMiB: 10_000, maxSandboxesPerTeam: 10 },
        new Gauge({ name: 'g', help: 'g', labelNames: ['state'], registers: [registry] }),
      );
      const counters = {
        vcpuSeconds: new Counter({ name: 'v', help: 'v', labelNames: ['team'], registers: [registry] }),
        memoryGibSeconds: new Counter({ name: 'm', help: 'm', labelNames: ['team'], registers: [registry] }),
        egressBytes: new Counter({ name: 'e', help: 'e', labelNames: ['team'], registers: [registry] }),
      };
      const kept: UsageSample[] = [];
      const meterOf = () =>
        new UsageMeter(
          database.db,
          { live: () => live.values(), samples: () => kept },
          counters,
          log,
          3_600_000,
        );
      const startedAt = new Date(Date.now() - 1000);
      const [row] = await database.db
        .insert(sandboxes)
        .values({
          id: 'e1',
          teamId: 'team1',
          templateId: 'base',
          nodeId: 'local',
          state: 'running',
          cpuCount: 1,
          memoryMb: 512,
          diskSizeMb: 1024,
          envdVersion: '0.0.1',
          envdAccessToken: 't',
          startedAt,
          endAt: new Date(Date.now() + 3_600_000),
        })
        .returning();
      assert.ok(row);
      live.add(liveFromRow(row, 'running'));
      const s = live.get('e1');
      assert.ok(s);
      const egress = async () =>
        (
          await database.db
            .select()
            .from(usageRecords)
            .where(eq(usageRecords.sandboxId, 'e1'))
            .orderBy(asc(usageRecords.intervalStart))
        ).map((r) => [r.state, r.egressBytes]);
      const t = Date.now();

      const meter = meterOf();
      meter.start();
      kept.push(sample(t - 900, 1000), sample(t - 500, 5000));
      await meter.tick();
      await sleep(20);
      meter.close('e1', 'running');
      s.state = 'paused';
      await sleep(20);
      await meter.tick();
      s.state = 'running';
      meter.close('e1', 'paused');
      // Resumed where its counter started again (another node): 300 from 0.
      kept.push(sample(t + 100, 300));
      await sleep(20);
      await meter.tick();
      await meter.stop();
      assert.deepEqual(await egress(), [
        ['running', 5000],
        ['running', 0],
        ['paused', 0],
        ['paused', 0],
        ['running', 300],
      ]);
      // Prometheus counts what the records counted.
      assert.equal(
        (await counters.egressBytes.get()).values.find((v) => v.labels.team === 'team1')?.value,
        5300,
      );

      // A restart: the new meter reads where the last record counted to (300), and its
      // samples are the ones taken since.
      const restarted = Date.now() + 1000;
      kept.length = 0;
      kept.push(sample(restarted, 800), sample(restarted + 1000, 1800));
      const after = meterOf();
      after.start();
      await sleep(20);
      await after.tick();
      await after.stop();
      assert.deepEqual((await egress()).at(-1), ['running', 800 - 300 + 1000]);

      // Records that do not say where they counted to (written by an older server): the
      // first reading seen is where counting starts.
      await database.db
        .update(usageRecords)
        .set({ egressCounterBytes: null })
        .where(eq(usageRecords.sandboxId, 'e1'));
      kept.length = 0;
      kept.push(sample(restarted + 5000, 2000), sample(restarted + 6000, 2600));
      const older = meterOf();
      older.start();
      await sleep(20);
      await older.tick();
      await older.stop();
      assert.deepEqual((await egress()).at(-1), ['running', 600]);
    } finally {
      await database.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
