// The dashboard's stats on the embedded database (PGlite): live sandboxes by state (a
// team's, or every team's with the nodes), creates and failures per step from lifecycle
// events, create latency percentiles and failed creates from the create log, steps aligned
// to the range's step, a bad range refused; and the create log's bounds.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type OpenedDatabase, openDatabase } from '../src/db/database.js';
import { sandboxEvents } from '../src/db/events-schema.js';
import { teams } from '../src/db/schema.js';
import { CREATE_LOG_KEEP_MS, CREATE_LOG_MAX, CreateLog } from '../src/metrics/create-log.js';
import { InvalidRequestError } from '../src/services/errors.js';
import type { LiveSandbox } from '../src/services/live-sandboxes.js';
import { quantile, SandboxStatsService } from '../src/services/sandbox-stats.js';

/** 12:00:30 UTC: the 1 h range's last step is 12:00–12:01. */
const NOW = Date.parse('2026-11-30T12:00:30Z');
const MIN = 60_000;

function live(id: string, teamId: string, nodeId: string, state: LiveSandbox['state']): LiveSandbox {
  return {
    id,
    teamId,
    nodeId,
    state,
    endAt: NOW + 3600_000,
    onTimeout: 'kill',
    autoPauseMemory: true,
    memoryMb: 512,
    allowPublicTraffic: true,
    envdAccessToken: 't',
    autoResume: false,
    httpsPorts: [],
  };
}

describe('sandbox stats', () => {
  let dir: string;
  let database: OpenedDatabase;
  let service: SandboxStatsService;
  const log = new CreateLog(() => NOW);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-stats-'));
    database = await openDatabase({ pgliteDir: join(dir, 'db') });
    const db = database.db;
    await db.insert(teams).values([
      { id: 'team1', name: 'one' },
      { id: 'team2', name: 'two' },
    ]);
    const event = (teamId: string, type: string, at: number) => ({
      teamId,
      sandboxId: `s${at}`,
      templateId: 'base',
      type: `sandbox.lifecycle.${type}`,
      createdAt: new Date(at),
    });
    await db.insert(sandboxEvents).values([
      // Two creates of team1 in 12:00–12:01, one in 11:58–11:59, one of team2 in 12:00–12:01.
      event('team1', 'created', NOW - 10_000),
      event('team1', 'created', NOW - 20_000),
      event('team1', 'created', NOW - 2 * MIN),
      event('team2', 'created', NOW - 5_000),
      // A failure of team1 in 11:59–12:00; a kill, which is not one.
      event('team1', 'failed', NOW - MIN),
      event('team1', 'killed', NOW - MIN),
      // Before the range.
      event('team1', 'created', NOW - 2 * 3600_000),
    ]);
    // team1's creates through this replica: 100, 200 … 1000 ms in 12:00–12:01, and a failure.
    for (let ms = 100; ms <= 1000; ms += 100) log.record('team1', ms, true);
    log.record('team1', 5000, false);
    log.record('team2', 7000, true);
    const sandboxes = [
      live('a', 'team1', 'n1', 'running'),
      live('b', 'team1', 'n2', 'paused'),
      live('c', 'team1', 'n1', 'creating'),
      live('d', 'team2', 'n2', 'running'),
    ];
    service = new SandboxStatsService(
      db,
      () => sandboxes,
      log,
      async () => [
        { id: 'n1', name: 'one', state: 'ready', capacity: { cores: 4 }, free: { memAvailableMiB: 1000 } },
        { id: 'n3', name: 'idle', state: 'cordoned', capacity: null, free: null },
      ],
    );
  });
  after(async () => {
    await database?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('a team’s: its live sandboxes, creates, failures and latency per step', async () => {
    const s = await service.stats('1h', 'team1', NOW);
    assert.equal(s.scope, 'team');
    assert.equal(s.stepSeconds, 60);
    assert.equal(s.to, '2026-11-30T12:01:00.000Z');
    assert.equal(s.from, '2026-11-30T11:01:00.000Z');
    assert.deepEqual(s.states, { creating: 1, running: 1, paused: 1 });
    assert.equal(s.nodes, undefined, 'nodes are the operator’s');
    assert.equal(s.steps.length, 60);
    const last = s.steps.at(-1);
    assert.deepEqual(last, {
      time: '2026-11-30T12:00:00.000Z',
      timestampUnix: Date.parse('2026-11-30T12:00:00Z') / 1000,
      creates: 2,
      failures: 0,
      createFailures: 1,
      createP50Ms: 500,
      createP95Ms: 1000,
    });
    assert.equal(s.steps.at(-2)?.failures, 1);
    assert.equal(s.steps.at(-2)?.createP50Ms, null, 'no creates: no latency');
    assert.equal(s.steps.at(-3)?.creates, 1);
    assert.equal(
      s.steps.reduce((n, x) => n + x.creates, 0),
      3,
      'the create two hours ago is outside',
    );
  });

  test('every team’s (the operator): all live sandboxes, by node with the cluster’s node facts', async () => {
    const s = await service.stats('15m', undefined, NOW);
    assert.equal(s.scope, 'all');
    assert.equal(s.steps.length, 15);
    assert.deepEqual(s.states, { creating: 1, running: 2, paused: 1 });
    assert.deepEqual(s.nodes, [
      {
        nodeId: 'n1',
        states: { creating: 1, running: 1, paused: 0 },
        name: 'one',
        state: 'ready',
        capacity: { cores: 4 },
        free: { memAvailableMiB: 1000 },
      },
      { nodeId: 'n2', states: { creating: 0, running: 1, paused: 1 } },
      {
        nodeId: 'n3',
        states: { creating: 0, running: 0, paused: 0 },
        name: 'idle',
        state: 'cordoned',
        capacity: null,
        free: null,
      },
    ]);
    const last = s.steps.at(-1);
    assert.equal(last?.creates, 3);
    assert.equal(last?.createP95Ms, 7000);
  });

  test('the 24 h range steps by 15 minutes; an unknown range is a 400', () => {
    assert.equal(SandboxStatsService.range(undefined), '1h');
    assert.equal(SandboxStatsService.range('24h'), '24h');
    assert.throws(() => SandboxStatsService.range('2y'), InvalidRequestError);
    assert.throws(() => SandboxStatsService.range('constructor'), InvalidRequestError);
  });

  test('quantile: the nearest rank', () => {
    assert.equal(quantile([], 0.5), null);
    assert.equal(quantile([7], 0.95), 7);
    assert.equal(quantile([1, 2, 3, 4], 0.5), 2);
    assert.equal(quantile([1, 2, 3, 4], 0.95), 4);
  });

  test('the create log forgets what is older than a day, and keeps at most its maximum', () => {
    let t = 0;
    const l = new CreateLog(() => t);
    l.record('x', 1, true);
    t = CREATE_LOG_KEEP_MS + 1;
    l.record('x', 2, true);
    assert.deepEqual(
      l.between(0, t + 1).map((o) => o.ms),
      [2],
    );
    for (let i = 0; i < CREATE_LOG_MAX + 5; i++) l.record('x', 3, false);
    assert.equal(l.between(0, t + 1).length, CREATE_LOG_MAX);
  });
});
