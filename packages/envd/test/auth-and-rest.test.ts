// The access token, signed file URLs, /init, /envs and /metrics.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AuthenticationError } from 'e2b';
import { fileSignature } from '../src/index.js';
import { ENVD_URL } from './helpers/harness.js';
import { rawClients, sdk, sdkWithToken, useSandbox } from './helpers/sandbox.js';

const sandbox = useSandbox();
const TOKEN = 'tok_0123456789abcdef0123456789abcdef';

describe('signatures', () => {
  test('the published test vector', () => {
    assert.equal(
      fileSignature('hello.txt', 'read', 'user', '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0'),
      'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E',
    );
  });
});

describe('before an access token is set', () => {
  test('/health is 204 and everything is open', async () => {
    const health = await fetch(`${ENVD_URL}/health`);
    assert.equal(health.status, 204);
    assert.equal(health.headers.get('e2b-envd-version'), '0.6.4');
    assert.equal((await (await sdk()).commands.run('echo open')).stdout, 'open\n');
  });

  test('/metrics reports CPU, memory and disk of the sandbox', async () => {
    const m = (await (await fetch(`${ENVD_URL}/metrics`)).json()) as Record<string, number>;
    for (const k of ['ts', 'cpu_count', 'cpu_used_pct', 'mem_total', 'mem_used', 'disk_used', 'disk_total']) {
      assert.equal(typeof m[k], 'number', k);
    }
    assert.ok((m.cpu_count ?? 0) >= 1);
    assert.ok((m.mem_used ?? 0) > 0 && (m.mem_used ?? 0) <= (m.mem_total ?? 0));
    assert.ok((m.disk_used ?? 0) > 0 && (m.disk_used ?? 0) <= (m.disk_total ?? 0));
    assert.ok((m.cpu_used_pct ?? -1) >= 0 && (m.cpu_used_pct ?? 101) <= 100);
  });
});

describe('/init', () => {
  test('rejects malformed bodies and unknown users with 400, changing nothing', async () => {
    const s = sandbox();
    const bad = await fetch(`${ENVD_URL}/init`, { method: 'POST', body: '{not json' });
    assert.equal(bad.status, 400);
    const unknown = await s.init({ defaultUser: 'nobody-here' });
    assert.equal(unknown.status, 400);
    assert.match(await unknown.text(), /nobody-here/);
    for (const [body, problem] of [
      ['[]', /not a JSON object/],
      ['null', /not a JSON object/],
      ['"init"', /not a JSON object/],
      ['{"envVars": {"BAD": 1}}', /envVars must map strings to strings/],
      ['{"envVars": {"BAD\\nKEY": 1}}', /envVars must map strings to strings/],
      ['{"envVars": ["BAD"]}', /envVars must map strings to strings/],
      ['{"accessToken": 5, "envVars": {"BAD": "1"}}', /accessToken must be a string/],
      ['{"defaultWorkdir": "tmp"}', /defaultWorkdir must be absolute/],
      ['{"hostname": "-bad-"}', /hostname is not a valid host name/],
      ['{"hostname": "a..b"}', /hostname is not a valid host name/],
    ] as const) {
      const res = await fetch(`${ENVD_URL}/init`, { method: 'POST', body });
      assert.equal(res.status, 400, body);
      assert.match(((await res.json()) as { message: string }).message, problem, body);
    }
    // Every problem at once.
    const many = await s.init({ defaultUser: 'nobody-here', hostname: '', timestamp: 'never' });
    assert.equal(many.status, 400);
    const { message } = (await many.json()) as { message: string };
    for (const problem of [/hostname/, /nobody-here/, /timestamp/]) assert.match(message, problem);
    const envs = (await (await fetch(`${ENVD_URL}/envs`)).json()) as Record<string, string>;
    assert.equal(envs.BAD, undefined);
    assert.equal((await (await sdk()).commands.run('id -un')).stdout, 'user\n');
  });

  test('takes the host clock (a clock already right is left alone) and refuses a bad one', async () => {
    const s = sandbox();
    assert.equal((await s.init({ timestamp: new Date().toISOString() })).status, 204);
    const bad = await s.init({ timestamp: 'yesterday-ish' });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /timestamp/);
  });

  test('takes entropy as hex of up to 512 bytes and refuses anything else', async () => {
    const s = sandbox();
    for (const entropy of ['xyz', 'ABCD', 'abc', 'ab'.repeat(513), '']) {
      const bad = await s.init({ entropy });
      assert.equal(bad.status, 400, entropy);
      assert.match(await bad.text(), /entropy/);
    }
    // Where envd may not reseed (a container shares the host's RNG) it says so and goes on.
    assert.equal((await s.init({ entropy: 'ab'.repeat(64) })).status, 204);
  });

  test('sets env vars (seen by /envs and processes), hostname, default user and workdir', async () => {
    const s = sandbox();
    const res = await s.init({
      envVars: { TEAM: 'blue' },
      hostname: 'sbx-test-1',
      defaultUser: 'root',
      defaultWorkdir: '/tmp',
    });
    assert.equal(res.status, 204);
    const envs = (await (await fetch(`${ENVD_URL}/envs`)).json()) as Record<string, string>;
    assert.equal(envs.TEAM, 'blue');
    const r = await (await sdk()).commands.run('echo "$TEAM $(hostname) $(id -un) $(pwd)"');
    assert.equal(r.stdout, 'blue sbx-test-1 root /tmp\n');
    const back = await s.init({ defaultUser: 'user', defaultWorkdir: '/home/user' });
    assert.equal(back.status, 204);
  });
});

describe('with an access token', () => {
  test('init sets the token; RPC and REST need it (401 without)', async () => {
    const s = sandbox();
    assert.equal((await s.init({ accessToken: TOKEN })).status, 204);

    const anonymous = await sdk();
    await assert.rejects(anonymous.commands.run('true'), (e: unknown) => e instanceof AuthenticationError);
    const noToken = await fetch(`${ENVD_URL}/envs`);
    assert.equal(noToken.status, 401);
    assert.deepEqual(await noToken.json(), {
      code: 401,
      message: 'unauthorized access, please provide a valid access token or method signing if supported',
    });
    assert.equal(
      (await fetch(`${ENVD_URL}/metrics`, { headers: { 'x-access-token': 'wrong' } })).status,
      401,
    );
    assert.equal((await fetch(`${ENVD_URL}/health`)).status, 204, '/health stays open');

    const secured = sdkWithToken(TOKEN);
    assert.equal((await secured.commands.run('echo secured')).stdout, 'secured\n');
    await secured.files.write('/home/user/secret.txt', 'classified');
    assert.equal(await secured.files.read('/home/user/secret.txt'), 'classified');
    assert.equal((await fetch(`${ENVD_URL}/envs`, { headers: { 'x-access-token': TOKEN } })).status, 200);
    await assert.rejects(
      anonymous.files.read('/home/user/secret.txt'),
      (e: unknown) => e instanceof AuthenticationError,
    );
    const { process } = rawClients();
    await assert.rejects(process.list({}), /unauthenticated|401/i);
  });

  test('signed URLs: download and upload work without the token; bad and expired signatures are 401', async () => {
    const secured = sdkWithToken(TOKEN);
    await secured.files.write('/home/user/signed.txt', 'via signature');
    const down = await secured.downloadUrl('/home/user/signed.txt', { user: 'user' });
    assert.match(down, /signature=v1_/);
    const got = await fetch(down);
    assert.equal(got.status, 200);
    assert.equal(await got.text(), 'via signature');

    const up = await secured.uploadUrl('/home/user/uploaded.txt', {
      user: 'user',
      useSignatureExpiration: 60,
    });
    assert.match(up, /signature_expiration=\d+/);
    const form = new FormData();
    form.append('file', new Blob(['uploaded by url']), 'uploaded.txt');
    const posted = await fetch(up, { method: 'POST', body: form });
    assert.equal(posted.status, 200, await posted.clone().text());
    assert.equal(await secured.files.read('/home/user/uploaded.txt'), 'uploaded by url');

    const tampered = down.replace('signed.txt', 'secret.txt');
    const denied = await fetch(tampered);
    assert.equal(denied.status, 401);
    assert.deepEqual(await denied.json(), { code: 401, message: 'invalid signature' });

    const missing = await fetch(`${ENVD_URL}/files?path=/home/user/signed.txt&username=user`);
    assert.deepEqual(await missing.json(), { code: 401, message: 'missing signature query parameter' });

    const past = Math.floor(Date.now() / 1000) - 10;
    const sig = fileSignature('/home/user/signed.txt', 'read', 'user', TOKEN, past);
    const expired = await fetch(
      `${ENVD_URL}/files?path=${encodeURIComponent('/home/user/signed.txt')}&username=user&signature=${encodeURIComponent(sig)}&signature_expiration=${past}`,
    );
    assert.equal(expired.status, 401);
    assert.deepEqual(await expired.json(), { code: 401, message: 'signature is already expired' });

    const wrongOp = fileSignature('/home/user/signed.txt', 'write', 'user', TOKEN);
    const asRead = await fetch(
      `${ENVD_URL}/files?path=${encodeURIComponent('/home/user/signed.txt')}&username=user&signature=${encodeURIComponent(wrongOp)}`,
    );
    assert.equal(asRead.status, 401, 'a write signature does not allow reading');
  });

  test('init is callable again (snapshot restore): same token fine, a new one needs the current one', async () => {
    const s = sandbox();
    assert.equal((await s.init({ accessToken: TOKEN, envVars: { AGAIN: '1' } })).status, 204);
    const hijack = await s.init({ accessToken: 'attacker' });
    assert.equal(hijack.status, 401);
    assert.equal((await sdkWithToken(TOKEN).commands.run('echo $AGAIN')).stdout, '1\n');
    const rotated = await s.init({ accessToken: 'tok_rotated' }, { 'x-access-token': TOKEN });
    assert.equal(rotated.status, 204);
    await assert.rejects(
      sdkWithToken(TOKEN).commands.run('true'),
      (e: unknown) => e instanceof AuthenticationError,
    );
    assert.equal((await sdkWithToken('tok_rotated').commands.run('echo rotated')).stdout, 'rotated\n');
  });
});
