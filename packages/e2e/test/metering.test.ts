// Metering through the real `aiva up` (containers) with a 2-second interval and a price
// table whose vCPU price doubles mid-run, driven by the e2b SDK: a 2-vCPU sandbox's
// running time in vCPU-seconds, a paused stretch metered as paused, the report's groups,
// totals, cost and CSV (and `aiva usage`), the Prometheus counters, another team seeing
// none of it — and a kill -9 of the server losing at most one interval.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import { type AivaUp, aivaUp, removeHome, runAiva, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

const INTERVAL_S = 2;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Sums {
  vcpuSeconds: number;
  memoryGiBSeconds: number;
  diskGiBSeconds: number;
  cpuSeconds: number;
  egressBytes: number;
  cost: number;
}
interface Report {
  currency: string;
  items: (Sums & { teamID: string; sandboxID?: string; templateID?: string; day?: string; vcpus: number })[];
  total: Sums & { grossCost: number; freeTier: number };
}

async function usage(
  up: AivaUp,
  q: Record<string, string | Date>,
  key = up.apiKey,
): Promise<{ status: number; body: Report & { message?: string } }> {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) params.set(k, v instanceof Date ? v.toISOString() : v);
  const r = await fetch(`${up.url}/v1/usage?${params}`, { headers: { 'x-api-key': key } });
  return { status: r.status, body: (await r.json()) as Report & { message?: string } };
}

/** The report of one sandbox between two times (the operator's key). */
async function sandboxUsage(up: AivaUp, id: string, from: Date, to: Date): Promise<Report['items'][number]> {
  const { status, body } = await usage(up, { from, to, groupBy: 'sandbox' });
  assert.equal(status, 200, JSON.stringify(body));
  const item = body.items.find((i) => i.sandboxID === id);
  assert.ok(item, `no usage of ${id} in ${JSON.stringify(body)}`);
  return item;
}

/**
 * Waits until `id`'s records reach `t`: its disk is metered whatever its state, so the half
 * second before `t` has as much as the half second before that.
 */
async function recordedUntil(up: AivaUp, id: string, t: Date): Promise<void> {
  const disk = async (a: number, b: number) =>
    (
      await usage(up, { from: new Date(t.getTime() - a), to: new Date(t.getTime() - b), groupBy: 'sandbox' })
    ).body.items.find((x) => x.sandboxID === id)?.diskGiBSeconds ?? 0;
  for (let i = 0; i < 30; i++) {
    const earlier = await disk(1000, 500);
    if (earlier > 0 && (await disk(500, 0)) >= earlier * 0.999) return;
    await sleep(INTERVAL_S * 500);
  }
  assert.fail(`${id}'s usage was not recorded up to ${t.toISOString()}`);
}

const near = (actual: number, expected: number, tolerance: number, what: string) =>
  assert.ok(
    Math.abs(actual - expected) <= tolerance,
    `${what}: ${actual}, expected ${expected} ± ${tolerance}`,
  );

checkHostLeaks();

describe('metering, usage report and cost', () => {
  let up: AivaUp;
  let dir: string;
  let started: Date;
  /** When the vCPU-hour price doubles. */
  let priceChange: Date;
  const ids: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-prices-'));
    started = new Date();
    priceChange = new Date(started.getTime() + 25_000);
    await writeFile(
      join(dir, 'prices.json'),
      JSON.stringify({
        currency: 'EUR',
        prices: [
          // 0.001 per vCPU-second, per 10 GiB-seconds of memory, per GiB-second of disk.
          {
            effectiveFrom: '2026-01-01',
            vcpuHour: 3.6,
            memoryGiBHour: 0.36,
            diskGiBMonth: 2592,
            egressGiB: 0.1,
          },
          {
            effectiveFrom: priceChange.toISOString(),
            vcpuHour: 7.2,
            memoryGiBHour: 0.36,
            diskGiBMonth: 2592,
            egressGiB: 0.1,
          },
        ],
      }),
    );
    up = await aivaUp(['--metering-interval', String(INTERVAL_S), '--prices', join(dir, 'prices.json')]);
    useServer(up);
  });

  after(async () => {
    if (!up) return;
    const code = await up.stop();
    await removeHome(up.home);
    await rm(dir, { recursive: true, force: true });
    assert.equal(code, 0, up.output());
  });

  test('a 2-vCPU sandbox run for 20 s accounts for 40 vCPU-seconds', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 120_000 });
    ids.push(sbx.sandboxId);
    const t0 = new Date();
    // Busy on one of its two vCPUs for a while: the measured CPU seconds see it.
    await sbx.commands.run('timeout 12 sh -c "while :; do :; done" || true', { timeoutMs: 20_000 });
    await sleep(Math.max(0, 20_000 - (Date.now() - t0.getTime())));
    const t1 = new Date();
    await sbx.kill();
    await recordedUntil(up, sbx.sandboxId, t1);
    const u = await sandboxUsage(up, sbx.sandboxId, t0, t1);
    const seconds = (t1.getTime() - t0.getTime()) / 1000;
    assert.equal(u.vcpus, 2, 'the base template has 2 vCPUs, and a container on this 2-core host gets them');
    near(seconds, 20, 1, 'the sandbox ran');
    near(u.vcpuSeconds, 2 * seconds, 0.05 * 2 * seconds, 'vCPU-seconds');
    near(u.vcpuSeconds, 40, 0.05 * 40, 'vCPU-seconds of 20 s');
    // 512 MiB of memory running all along.
    near(u.memoryGiBSeconds, 0.5 * seconds, 0.05 * 0.5 * seconds, 'memory GiB-seconds');
    assert.ok(u.diskGiBSeconds > 0);
    assert.ok(u.cpuSeconds > 3 && u.cpuSeconds < 2 * seconds, `measured CPU seconds ${u.cpuSeconds}`);
    assert.equal(u.egressBytes, 0, 'it sent nothing out of the host');
    // Its whole life (creation included) is a little more, never less.
    const all = await sandboxUsage(up, sbx.sandboxId, started, new Date());
    assert.ok(
      all.vcpuSeconds >= u.vcpuSeconds && all.vcpuSeconds < u.vcpuSeconds + 2 * 10,
      JSON.stringify(all),
    );
  });

  test('a paused stretch is metered as paused: no vCPU or memory, the disk still', async () => {
    const sbx = await Sandbox.create({ timeoutMs: 120_000 });
    ids.push(sbx.sandboxId);
    const t0 = new Date();
    await sleep(4000);
    assert.equal(await sbx.pause(), true);
    const p0 = new Date();
    await sleep(3 * INTERVAL_S * 1000);
    const p1 = new Date();
    const resumed = await Sandbox.connect(sbx.sandboxId);
    await sleep(4000);
    const t1 = new Date();
    await resumed.kill();
    await recordedUntil(up, sbx.sandboxId, t1);
    const paused = await sandboxUsage(up, sbx.sandboxId, p0, p1);
    const pausedS = (p1.getTime() - p0.getTime()) / 1000;
    assert.equal(paused.vcpuSeconds, 0, JSON.stringify(paused));
    assert.equal(paused.memoryGiBSeconds, 0);
    // Its disk: the template's size, all the time.
    const whole = await sandboxUsage(up, sbx.sandboxId, t0, t1);
    const diskGiB = paused.diskGiBSeconds / pausedS;
    assert.ok(diskGiB > 0, JSON.stringify(paused));
    near(
      whole.diskGiBSeconds,
      diskGiB * ((t1.getTime() - t0.getTime()) / 1000),
      0.02 * whole.diskGiBSeconds,
      'disk',
    );
    // Running before and after: at least 4 + 4 s of 2 vCPUs, and not the paused stretch.
    assert.ok(whole.vcpuSeconds >= 2 * 8 * 0.95, JSON.stringify(whole));
    assert.ok(
      whole.vcpuSeconds <= 2 * ((t1.getTime() - t0.getTime()) / 1000 - pausedS) + 0.01,
      JSON.stringify(whole),
    );
  });

  test('the report groups, totals and prices right (the price doubling mid-range), as JSON, CSV and aiva usage', async () => {
    const to = new Date();
    const range = { from: started, to };
    const bySandbox = (await usage(up, { ...range, groupBy: 'sandbox' })).body;
    assert.equal(bySandbox.currency, 'EUR');
    assert.deepEqual(bySandbox.items.map((i) => i.sandboxID).sort(), [...ids].sort());
    for (const k of ['vcpuSeconds', 'memoryGiBSeconds', 'diskGiBSeconds', 'cost'] as const) {
      const sum = bySandbox.items.reduce((s, i) => s + i[k], 0);
      near(bySandbox.total[k], sum, 1e-5, `total ${k}`);
    }
    const byTemplate = (await usage(up, { ...range, groupBy: 'template' })).body;
    assert.deepEqual(
      byTemplate.items.map((i) => i.templateID),
      ['base'],
    );
    const byDay = (await usage(up, { ...range, groupBy: 'day' })).body;
    assert.ok(byDay.items.every((i) => /^\d{4}-\d{2}-\d{2}$/.test(i.day ?? '')));
    for (const other of [byTemplate, byDay]) {
      near(other.total.vcpuSeconds, bySandbox.total.vcpuSeconds, 1e-4, 'the same total by any group');
      near(other.total.cost, bySandbox.total.cost, 1e-4, 'the same cost by any group');
    }

    // Cost: before the change 0.001 per vCPU-second, after it 0.002.
    const before = (await usage(up, { from: started, to: priceChange, groupBy: 'template' })).body.total;
    const afterChange = (await usage(up, { from: priceChange, to, groupBy: 'template' })).body.total;
    assert.ok(before.vcpuSeconds > 0 && afterChange.vcpuSeconds > 0, 'usage on both sides of the change');
    const other = (t: Sums) => t.memoryGiBSeconds * 0.0001 + t.diskGiBSeconds * 0.001;
    near(before.cost, before.vcpuSeconds * 0.001 + other(before), 1e-4, 'cost before the change');
    near(
      afterChange.cost,
      afterChange.vcpuSeconds * 0.002 + other(afterChange),
      1e-4,
      'cost after the change',
    );
    near(bySandbox.total.cost, before.cost + afterChange.cost, 1e-4, 'the whole range’s cost');

    // CSV, by Accept and by format=csv.
    const csvRes = await fetch(
      `${up.url}/v1/usage?${new URLSearchParams({ from: started.toISOString(), to: to.toISOString() })}`,
      { headers: { 'x-api-key': up.apiKey, accept: 'text/csv' } },
    );
    assert.equal(csvRes.status, 200);
    assert.match(csvRes.headers.get('content-type') ?? '', /^text\/csv/);
    const rows = (await csvRes.text())
      .trim()
      .split('\n')
      .map((l) => l.split(','));
    assert.deepEqual(rows[0], [
      'teamID',
      'key',
      'vcpus',
      'vcpuSeconds',
      'memoryGiBSeconds',
      'diskGiBSeconds',
      'cpuSeconds',
      'egressBytes',
      'cost',
    ]);
    assert.equal(rows.length, ids.length + 2);
    for (const r of rows.slice(1, -1)) {
      const item = bySandbox.items.find((i) => i.sandboxID === r[1]);
      assert.ok(item, `CSV line ${r}`);
      assert.equal(Number(r[3]), item.vcpuSeconds);
      assert.equal(Number(r[8]), item.cost);
    }
    assert.equal(rows.at(-1)?.[0], 'total');
    assert.equal(Number(rows.at(-1)?.[8]), bySandbox.total.cost);
    const cli = await runAiva(up.home, [
      'usage',
      '--from',
      started.toISOString(),
      '--to',
      to.toISOString(),
      '--group-by',
      'template',
      '--csv',
    ]);
    assert.match(cli.stdout, /^teamID,key,/);
    assert.match(cli.stdout, /,base,2,/);
    const table = await runAiva(up.home, [
      'usage',
      '--from',
      started.toISOString(),
      '--to',
      to.toISOString(),
    ]);
    for (const id of ids) assert.match(table.stdout, new RegExp(id));

    // Bad input.
    assert.equal((await usage(up, { from: 'yesterday' })).status, 400);
    assert.equal((await usage(up, { from: to, to: started })).status, 400);
    assert.equal((await usage(up, { groupBy: 'week' })).status, 400);

    // Prometheus: the usage counters by team.
    const metrics = await (await fetch(`${up.url}/metrics`)).text();
    const vcpu = /aiva_usage_vcpu_seconds_total\{team="([^"]+)"\} ([\d.e+]+)/.exec(metrics);
    assert.ok(vcpu && Number(vcpu[2]) >= 40, metrics);
    assert.equal(vcpu[1], bySandbox.items[0]?.teamID);
    assert.match(metrics, /aiva_usage_memory_gib_seconds_total\{team="[^"]+"\} [\d.]+/);
  });

  test('another team’s key sees none of it; only the operator sees other teams', async () => {
    const made = await fetch(`${up.url}/v1/teams`, {
      method: 'POST',
      headers: { 'x-api-key': up.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'other' }),
    });
    assert.equal(made.status, 201);
    const other = (await made.json()) as { teamId: string; key: string };
    const range = { from: started, to: new Date() };
    const own = await usage(up, { ...range, groupBy: 'sandbox' }, other.key);
    assert.equal(own.status, 200);
    assert.deepEqual(own.body.items, []);
    assert.equal(own.body.total.vcpuSeconds, 0);
    assert.equal(own.body.total.cost, 0);
    const operatorTeam = (await usage(up, { ...range })).body.items[0]?.teamID ?? '';
    assert.equal((await usage(up, { ...range, teamID: operatorTeam }, other.key)).status, 403);
    const filtered = await usage(up, { ...range, teamID: other.teamId });
    assert.deepEqual(filtered.body.items, [], 'the operator filtering on the other team');
    assert.equal((await usage(up, range, 'e2b_0000000000000000000000000000000000000000')).status, 401);
  });
});

test('kill -9 of the server mid-interval loses at most one interval; after a restart metering goes on', {
  timeout: 180_000,
}, async (t) => {
  const first = await aivaUp(['--metering-interval', String(INTERVAL_S)]);
  let second: AivaUp | undefined;
  t.after(async () => {
    await first.crash();
    if (second) assert.equal(await second.stop(), 0, second.output());
    await removeHome(first.home);
  });
  useServer(first);
  const sbx = await Sandbox.create({ timeoutMs: 600_000 });
  const t0 = new Date();
  await recordedUntil(first, sbx.sandboxId, new Date(t0.getTime() + 3 * INTERVAL_S * 1000));
  // Mid-interval: half an interval after the last write.
  await sleep(INTERVAL_S * 500);
  const crashed = new Date();
  await first.crash();
  const lastKept = new Date(crashed.getTime() - INTERVAL_S * 1000 - 200);
  second = await aivaUp(['--metering-interval', String(INTERVAL_S)], { home: first.home });
  useServer(second);
  const kept = await sandboxUsage(second, sbx.sandboxId, t0, lastKept);
  near(
    kept.vcpuSeconds,
    2 * ((lastKept.getTime() - t0.getTime()) / 1000),
    0.05,
    'everything up to an interval before the crash was kept',
  );
  await sleep(2 * INTERVAL_S * 1000);
  const t1 = new Date();
  await (await Sandbox.connect(sbx.sandboxId)).kill();
  await recordedUntil(second, sbx.sandboxId, t1);
  // The sandbox ran on through the crash (adopted): counted once, with no gap.
  const whole = await sandboxUsage(second, sbx.sandboxId, t0, t1);
  near(
    whole.vcpuSeconds,
    2 * ((t1.getTime() - t0.getTime()) / 1000),
    0.05,
    'vCPU-seconds across the restart',
  );
});
