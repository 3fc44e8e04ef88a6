// Quotas per team and the server's default cap, against a real `aiva up` (containers)
// driven by the e2b SDK: past a quota the API answers 429 with Retry-After and E2B's
// `{code, message}`, the SDK raises RateLimitError, and nothing of the refused create is
// left; the operator sets quotas with `aiva teams` and PATCH /v1/teams/{id}, others may
// not; a key's request rate holds under a burst from a second process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { RateLimitError, Sandbox } from 'e2b';
import { aivaUpForFile, runAiva } from './helpers/aiva-up.js';

/** The server's default: two live sandboxes a team. */
const server = aivaUpForFile(['--team-max-sandboxes', '2']);

/** Long enough that Retry-After (when the first of them ends) is past the SDK's 60 s of retrying. */
const LONG_MS = 600_000;

async function api(method: string, path: string, body?: unknown, key = server.up.apiKey) {
  const r = await fetch(`${server.up.url}${path}`, {
    method,
    headers: { 'x-api-key': key, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  return { status: r.status, headers: r.headers, body: text ? JSON.parse(text) : undefined };
}

/** A new team made with `aiva teams create` (the operator's CLI), and its key. */
async function newTeam(name: string): Promise<{ teamId: string; key: string }> {
  const { stdout, stderr } = await runAiva(server.up.home, ['teams', 'create', name]);
  const teamId = /created team (team_[a-f0-9]+)/.exec(stderr)?.[1];
  assert.ok(teamId, stderr);
  return { teamId, key: stdout.trim() };
}

/** The team's live sandboxes' ids, as its key lists them. */
async function liveIds(key: string): Promise<string[]> {
  const r = await api('GET', '/v2/sandboxes?state=running,paused', undefined, key);
  assert.equal(r.status, 200);
  return (r.body as { sandboxID: string }[]).map((s) => s.sandboxID).sort();
}

/** A create refused with 429: Retry-After in whole seconds, E2B's body; the SDK's RateLimitError. */
async function assertRefused(key: string, says: RegExp): Promise<void> {
  const r = await api('POST', '/sandboxes', { templateID: 'base', timeout: 60 }, key);
  assert.equal(r.status, 429, JSON.stringify(r.body));
  assert.match(r.headers.get('retry-after') ?? '', /^[1-9][0-9]*$/);
  assert.equal(r.body.code, 429);
  assert.match(r.body.message, says);
  await assert.rejects(Sandbox.create({ apiKey: key, timeoutMs: LONG_MS }), (e) => {
    assert.ok(e instanceof RateLimitError, `${(e as Error).name}: ${(e as Error).message}`);
    assert.match((e as Error).message, says);
    return true;
  });
}

const rejections = async (teamId: string, kind: string) => {
  const text = await (await fetch(`${server.up.url}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`aiva_quota_rejections_total{team="${teamId}",kind="${kind}"}`));
  return Number(line?.split(' ')[1] ?? 0);
};

describe('quotas and rate limits', () => {
  test('the server’s default cap: a team’s third create is a 429 with Retry-After, RateLimitError in the SDK', async (t) => {
    const made = [await Sandbox.create({ timeoutMs: LONG_MS }), await Sandbox.create({ timeoutMs: LONG_MS })];
    t.after(() => Promise.all(made.map((s) => s.kill())));
    await assertRefused(server.up.apiKey, /already runs 2 sandboxes/);
    assert.deepEqual(
      await liveIds(server.up.apiKey),
      made.map((s) => s.sandboxId).sort(),
      'nothing more is left',
    );
  });

  test('a team’s max sandboxes (set with `aiva teams set-quota`): the N+1th create is refused and leaves nothing', async (t) => {
    const team = await newTeam('capped');
    const { stdout } = await runAiva(server.up.home, [
      'teams',
      'set-quota',
      'capped',
      '--max-sandboxes',
      '1',
    ]);
    assert.match(stdout, /--max-sandboxes 1 /);
    const listed = JSON.parse((await runAiva(server.up.home, ['teams', 'ls', '--json'])).stdout) as {
      id: string;
      quota: { maxSandboxes: number | null };
    }[];
    assert.equal(listed.find((x) => x.id === team.teamId)?.quota.maxSandboxes, 1);

    const one = await Sandbox.create({ apiKey: team.key, timeoutMs: LONG_MS });
    t.after(() => one.kill());
    await assertRefused(team.key, /already runs 1 sandboxes/);
    assert.deepEqual(await liveIds(team.key), [one.sandboxId]);
    assert.equal(await rejections(team.teamId, 'sandboxes'), 2);
    // A quota replaces the server's default, upward too.
    await runAiva(server.up.home, ['teams', 'set-quota', team.teamId, '--max-sandboxes', '3']);
    const more = [
      await Sandbox.create({ apiKey: team.key, timeoutMs: LONG_MS }),
      await Sandbox.create({ apiKey: team.key, timeoutMs: LONG_MS }),
    ];
    t.after(() => Promise.all(more.map((s) => s.kill())));
    assert.equal((await liveIds(team.key)).length, 3);
  });

  test('a create that would take the team past its vCPUs or memory is refused, and its sandbox goes', async (t) => {
    const team = await newTeam('sized');
    const one = await Sandbox.create({ apiKey: team.key, timeoutMs: LONG_MS });
    t.after(() => one.kill());
    const { cpuCount, memoryMB } = await one.getInfo();
    assert.ok(cpuCount >= 1 && memoryMB >= 1);

    const patched = await api('PATCH', `/v1/teams/${team.teamId}`, { quota: { maxVcpus: cpuCount } });
    assert.equal(patched.status, 200, JSON.stringify(patched.body));
    await assertRefused(team.key, new RegExp(`quota of ${cpuCount} vCPUs`));
    assert.deepEqual(await liveIds(team.key), [one.sandboxId]);

    await api('PATCH', `/v1/teams/${team.teamId}`, { quota: { maxVcpus: null, maxMemoryMiB: memoryMB } });
    await assertRefused(team.key, new RegExp(`quota of ${memoryMB} MiB of memory`));
    assert.deepEqual(await liveIds(team.key), [one.sandboxId]);
    assert.equal(await rejections(team.teamId, 'vcpus'), 2);
    assert.equal(await rejections(team.teamId, 'memory'), 2);
  });

  test('a key’s requests per second hold under a burst from a second process', async () => {
    const team = await newTeam('chatty');
    await api('PATCH', `/v1/teams/${team.teamId}`, { quota: { requestsPerSecond: 5 } });
    // A child process fires 40 requests at once and reports what came back.
    const burst = `
      const started = performance.now();
      const rs = await Promise.all(Array.from({ length: 40 }, () =>
        fetch(process.argv[1] + '/v2/sandboxes', { headers: { 'x-api-key': process.argv[2] } })
          .then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.json() }))));
      console.log(JSON.stringify({ elapsedS: (performance.now() - started) / 1000, rs }));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', burst, server.up.url, team.key], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const [code] = await once(child, 'exit');
    assert.equal(code, 0);
    const { elapsedS, rs } = JSON.parse(out) as {
      elapsedS: number;
      rs: { status: number; retryAfter: string | null; body: { code: number } }[];
    };
    const ok = rs.filter((r) => r.status === 200).length;
    const limited = rs.filter((r) => r.status === 429);
    assert.equal(ok + limited.length, 40, JSON.stringify(rs.map((r) => r.status)));
    // Five at once, and five a second back while the burst ran.
    assert.ok(ok >= 5 && ok <= 5 + Math.ceil(elapsedS * 5), `${ok} of 40 let through in ${elapsedS} s`);
    for (const r of limited) {
      assert.match(r.retryAfter ?? '', /^[1-9][0-9]*$/);
      assert.equal(r.body.code, 429);
    }
    assert.equal(await rejections(team.teamId, 'requests'), limited.length);
    // Another team's key is not held back.
    assert.equal((await api('GET', '/v2/sandboxes')).status, 200);
  });

  test('only the operator sets quotas (403); bad values are 400; a timeout past the max lifetime is 400', async (t) => {
    const team = await newTeam('checked');
    const asTeam = await api('PATCH', `/v1/teams/${team.teamId}`, { quota: { maxSandboxes: 100 } }, team.key);
    assert.equal(asTeam.status, 403);
    assert.match(asTeam.body.message, /only the operator team/);
    const created = await api('POST', '/v1/teams', { name: 'x' }, team.key);
    assert.equal(created.status, 403);
    const own = await api('GET', '/v1/teams', undefined, team.key);
    assert.deepEqual(
      (own.body as { id: string }[]).map((x) => x.id),
      [team.teamId],
      'a team sees only itself',
    );

    for (const quota of [
      { maxSandboxes: 0 },
      { maxVcpus: -1 },
      { maxMemoryMiB: 1.5 },
      { createsPerMinute: 'many' },
      { maxLifetimeS: 86_401 },
    ]) {
      const r = await api('PATCH', `/v1/teams/${team.teamId}`, { quota });
      assert.equal(r.status, 400, `${JSON.stringify(quota)}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 400);
    }
    assert.equal((await api('PATCH', `/v1/teams/${team.teamId}`, {})).status, 400);
    assert.equal((await api('PATCH', '/v1/teams/team_0000', { quota: { maxVcpus: 2 } })).status, 404);
    const unchanged = (await api('GET', '/v1/teams')).body.find((x: { id: string }) => x.id === team.teamId);
    assert.equal(unchanged.quota.maxSandboxes, null, 'nothing half-set');

    await api('PATCH', `/v1/teams/${team.teamId}`, { quota: { maxLifetimeS: 60 } });
    const long = await api('POST', '/sandboxes', { templateID: 'base', timeout: 120 }, team.key);
    assert.equal(long.status, 400);
    assert.match(long.body.message, /maximum sandbox lifetime of 60s/);
    assert.deepEqual(await liveIds(team.key), [], 'the refused create left nothing');
    await assert.rejects(
      Sandbox.create({ apiKey: team.key, timeoutMs: 120_000 }),
      /maximum sandbox lifetime of 60s/,
    );
    // Without a timeout (the SDK sends none unless asked), a create gets the max.
    const sbx = await Sandbox.create({ apiKey: team.key });
    t.after(() => sbx.kill());
    const id = sbx.sandboxId;
    const info = await sbx.getInfo();
    const lifetimeS = (info.endAt.getTime() - info.startedAt.getTime()) / 1000;
    assert.ok(
      lifetimeS > 59 && lifetimeS <= 60,
      `a create without a timeout lives the max, 60 s (got ${lifetimeS})`,
    );
    const later = await api('POST', `/sandboxes/${id}/timeout`, { timeout: 61 }, team.key);
    assert.equal(later.status, 400);
    assert.match(later.body.message, /maximum sandbox lifetime of 60s/);
  });
});
