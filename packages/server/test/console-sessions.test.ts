// The web console's sessions: the CSRF rule of a cookie-authenticated call (pure), and
// the sessions themselves on both databases the server runs on — made only from a key
// the API accepts, standing for that key (team, scopes), stored as a hash, ended by
// sign-out, by the key's removal and by its expiry.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { eq } from 'drizzle-orm';
import {
  csrfRefusal,
  hashSessionToken,
  isSessionToken,
  SESSION_LIFETIME_MS,
  sessionCookieOptions,
  withoutSessionCookie,
} from '../src/auth/console-session-rules.js';
import { consoleSessions } from '../src/db/schema.js';
import { ConsoleSessions } from '../src/services/console-sessions.js';
import { UnauthorizedError } from '../src/services/errors.js';
import { TeamService } from '../src/services/team-service.js';
import { BACKENDS, openTestDatabase, type TestDatabase } from './helpers/test-databases.js';

describe('CSRF rule of cookie-authenticated calls', () => {
  const host = '127.0.0.1:3000';
  test('reads pass without the header', () => {
    assert.equal(csrfRefusal('GET', { host }), undefined);
    assert.equal(csrfRefusal('HEAD', { host, origin: 'http://evil.example' }), undefined);
  });
  test('a change needs X-Aiva-Console: 1', () => {
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'])
      assert.match(csrfRefusal(method, { host }) ?? '', /X-Aiva-Console: 1/);
    assert.match(csrfRefusal('POST', { host, console: 'yes' }) ?? '', /X-Aiva-Console/);
    assert.equal(csrfRefusal('POST', { host, console: '1' }), undefined);
  });
  test('an Origin, when sent, must be this host', () => {
    assert.equal(csrfRefusal('POST', { host, console: '1', origin: 'http://127.0.0.1:3000' }), undefined);
    assert.equal(
      csrfRefusal('POST', { host: 'API.example', console: '1', origin: 'https://api.example' }),
      undefined,
    );
    for (const origin of ['http://evil.example', 'http://127.0.0.1:3001', 'null', 'not a url'])
      assert.match(csrfRefusal('DELETE', { host, console: '1', origin }) ?? '', /cross-origin/, origin);
    assert.match(
      csrfRefusal('POST', { console: '1', origin: 'http://127.0.0.1:3000' }) ?? '',
      /cross-origin/,
    );
  });
  test('the cookie is HttpOnly, SameSite=Strict, for the whole origin, with an expiry', () => {
    const at = new Date(Date.now() + 1000);
    assert.deepEqual(sessionCookieOptions(at, false), {
      path: '/',
      httpOnly: true,
      sameSite: 'strict',
      secure: false,
      expires: at,
    });
    assert.equal(sessionCookieOptions(at, true).secure, true);
  });
  test('sandbox traffic carries every cookie but the session', () => {
    assert.equal(withoutSessionCookie('aiva_console=abc'), undefined);
    assert.equal(withoutSessionCookie('a=1; aiva_console=abc;b=2'), 'a=1; b=2');
    assert.equal(
      withoutSessionCookie('aiva_console_x=1; x=aiva_console=2'),
      'aiva_console_x=1; x=aiva_console=2',
    );
  });
});

for (const backend of BACKENDS)
  describe(`console sessions on ${backend}`, () => {
    let testDb: TestDatabase;
    let teams: TeamService;
    let sessions: ConsoleSessions;
    let teamId: string;

    before(async () => {
      testDb = await openTestDatabase(backend, 'aiva-console-sessions-');
      teams = new TeamService(testDb.database.db);
      sessions = new ConsoleSessions(testDb.database.db, teams);
      teamId = (await teams.ensureFirstTeam()).teamId;
    });
    after(async () => testDb?.close());

    test('a wrong or malformed key makes no session', async () => {
      for (const key of [`e2b_${'0'.repeat(40)}`, 'nonsense', ''])
        await assert.rejects(
          sessions.authenticate(key),
          (e: Error) => e instanceof UnauthorizedError && e.message === 'Invalid API key',
        );
      assert.equal((await testDb.database.db.select().from(consoleSessions)).length, 0);
    });

    test('a session stands for its key: team and scopes; only the token’s hash is stored', async () => {
      const { key, info } = await teams.createKey(teamId, { name: 'ro', scopes: ['read-only'] });
      const opened = await sessions.open(await sessions.authenticate(key));
      assert.ok(isSessionToken(opened.token));
      assert.deepEqual(opened.info.scopes, ['read-only']);
      assert.equal(opened.info.keyId, info.id);
      const left = new Date(opened.info.expiresAt).getTime() - Date.now();
      assert.ok(left > SESSION_LIFETIME_MS - 60_000 && left <= SESSION_LIFETIME_MS, `expires in ${left} ms`);
      const [row] = await testDb.database.db
        .select()
        .from(consoleSessions)
        .where(eq(consoleSessions.id, opened.caller.sessionId));
      assert.equal(row?.tokenHash, hashSessionToken(opened.token));
      assert.ok(!JSON.stringify(row).includes(opened.token), 'the token itself is not stored');
      const caller = await sessions.resolve(opened.token);
      assert.deepEqual(
        { teamId: caller?.teamId, keyId: caller?.keyId, scopes: caller?.scopes },
        { teamId, keyId: info.id, scopes: ['read-only'] },
      );
      assert.equal(
        await sessions.resolve(`${opened.token.slice(0, -1)}x`),
        undefined,
        'a near miss is no session',
      );
      assert.equal(await sessions.resolve('short'), undefined);
    });

    test('sign-out ends the session', async () => {
      const { key } = await teams.createKey(teamId, { name: 'out' });
      const opened = await sessions.open(await sessions.authenticate(key));
      assert.equal(await sessions.close(opened.caller.sessionId), true);
      assert.equal(await sessions.resolve(opened.token), undefined);
      assert.equal(await sessions.close(opened.caller.sessionId), false);
    });

    test('removing the key ends its sessions', async () => {
      const { key, info } = await teams.createKey(teamId, { name: 'removed' });
      const opened = await sessions.open(await sessions.authenticate(key));
      assert.equal(await teams.removeKey(teamId, info.id), true);
      assert.equal(await sessions.resolve(opened.token), undefined);
    });

    test('a session ends when its key expires, and an expired key opens none', async () => {
      const { key } = await teams.createKey(teamId, { name: 'short', expiresInSeconds: 1 });
      const opened = await sessions.open(await sessions.authenticate(key));
      assert.ok(new Date(opened.info.expiresAt).getTime() <= Date.now() + 1000, 'never outlives its key');
      assert.ok(await sessions.resolve(opened.token));
      await sleep(1100);
      let after: unknown;
      try {
        after = await sessions.resolve(opened.token);
      } catch (e) {
        after = e;
      }
      assert.ok(after === undefined || after instanceof UnauthorizedError, 'no caller once the key expired');
      await assert.rejects(sessions.authenticate(key), /API key expired/);
    });
  });
