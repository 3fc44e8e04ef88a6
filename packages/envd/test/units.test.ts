// Pure pieces of envd, checked without a sandbox.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signalOfStatus } from '@aiva/node';
import { ENVD_SIGNAL_TEXT, EnvdInitBody, fileSignature } from '@aiva/protocol';
import { Check } from 'typebox/value';
import { basicAuthUser, checkFileAccess, SignatureError } from '../src/auth.js';
import { goModeString } from '../src/fs/entry-info.js';
import { acceptedEncoding } from '../src/http/files.js';
import { initProblems } from '../src/http/init.js';
import { InvalidPathError, resolveUserPath } from '../src/paths.js';
import { exitDescription } from '../src/process/exit-status.js';
import type { GuestUser } from '../src/users.js';

const user: GuestUser = {
  name: 'user',
  uid: 1000,
  gid: 1000,
  home: '/home/user',
  shell: '/bin/bash',
  groups: [1000],
};

test('paths: ~, relative, empty, dot-dot, NUL', () => {
  assert.equal(resolveUserPath('~', user), '/home/user');
  assert.equal(resolveUserPath('~/a/b', user), '/home/user/a/b');
  assert.equal(resolveUserPath('a/../b/', user), '/home/user/b');
  assert.equal(resolveUserPath('', user), '/home/user');
  assert.equal(resolveUserPath('', user, '/work'), '/work');
  assert.equal(resolveUserPath('/etc/../tmp', user), '/tmp');
  assert.throws(() => resolveUserPath('/a\0b', user), InvalidPathError);
  assert.throws(() => resolveUserPath('~root/x', user), InvalidPathError);
});

test("permissions are written like Go's FileMode.String()", () => {
  assert.equal(goModeString(0o100644), '-rw-r--r--');
  assert.equal(goModeString(0o040755), 'drwxr-xr-x');
  assert.equal(goModeString(0o041777), 'dtrwxrwxrwx');
  assert.equal(goModeString(0o120777), 'Lrwxrwxrwx');
  assert.equal(goModeString(0o020666), 'Dcrw-rw-rw-');
  assert.equal(goModeString(0o060660), 'Drw-rw----');
  assert.equal(goModeString(0o104755), 'urwxr-xr-x');
  assert.equal(goModeString(0o010644), 'prw-r--r--');
  assert.equal(goModeString(0o140755), 'Srwxr-xr-x');
});

test('exit statuses are named like Go (and so E2B) names them', () => {
  assert.deepEqual(exitDescription(0, null), { exitCode: 0, exited: true, status: 'exit status 0' });
  assert.deepEqual(exitDescription(2, null), {
    exitCode: 2,
    exited: true,
    status: 'exit status 2',
    error: 'exit status 2',
  });
  assert.deepEqual(exitDescription(null, 'SIGKILL'), {
    exitCode: -1,
    exited: false,
    status: 'signal: killed',
    error: 'signal: killed',
  });
  assert.equal(exitDescription(null, 'SIGTERM').status, 'signal: terminated');
  assert.equal(exitDescription(null, 'SIGSEGV').status, 'signal: segmentation fault');
  assert.equal(exitDescription(null, 'SIGRTMIN' as NodeJS.Signals).status, 'signal: sigrtmin');
});

test('every signal end envd reports, the node reads back as that signal', () => {
  for (const signal of Object.keys(ENVD_SIGNAL_TEXT) as NodeJS.Signals[])
    assert.equal(signalOfStatus(exitDescription(null, signal).status), signal);
});

test('Accept-Encoding negotiation', () => {
  assert.equal(acceptedEncoding(undefined), 'identity');
  assert.equal(acceptedEncoding('gzip, deflate'), 'gzip');
  assert.equal(acceptedEncoding('br'), 'identity');
  assert.equal(acceptedEncoding('identity, gzip;q=0.5'), 'identity');
  assert.equal(acceptedEncoding('gzip;q=0, identity'), 'identity');
  assert.equal(acceptedEncoding('*'), 'identity');
  assert.equal(acceptedEncoding('identity;q=0, *'), 'gzip');
  assert.ok(acceptedEncoding('identity;q=0, br') instanceof Error);
});

test('signatures and file access', () => {
  const token = '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0';
  assert.equal(
    fileSignature('hello.txt', 'read', 'user', token),
    'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E',
  );
  const base = {
    token,
    headerToken: undefined,
    path: 'hello.txt',
    username: 'user',
    operation: 'read' as const,
  };
  const sig = fileSignature('hello.txt', 'read', 'user', token, 2_000_000_000);
  checkFileAccess({ ...base, signature: sig, expiration: '2000000000', now: 1_999_999_999_000 });
  assert.throws(
    () => checkFileAccess({ ...base, signature: sig, expiration: '2000000000', now: 2_000_000_001_000 }),
    (e: unknown) => e instanceof SignatureError && e.message === 'signature is already expired',
  );
  assert.throws(
    () => checkFileAccess({ ...base, signature: undefined, expiration: undefined }),
    /missing signature/,
  );
  assert.throws(
    () => checkFileAccess({ ...base, signature: 'v1_x', expiration: undefined }),
    /invalid signature/,
  );
  checkFileAccess({ ...base, headerToken: token, signature: undefined, expiration: undefined });
  checkFileAccess({ ...base, token: undefined, signature: undefined, expiration: undefined });
});

test('Basic auth user', () => {
  assert.equal(basicAuthUser(`Basic ${Buffer.from('user:').toString('base64')}`), 'user');
  assert.equal(basicAuthUser(`basic ${Buffer.from('root:').toString('base64')}`), 'root');
  assert.equal(basicAuthUser('Bearer x'), undefined);
  assert.equal(basicAuthUser(undefined), undefined);
});

test("/init's check agrees with the contract's TypeBox schema, and says what is wrong", () => {
  const bodies: unknown[] = [
    {},
    { envVars: { A: '1', 'B\nC': '2' }, accessToken: 't', defaultUser: 'user', defaultWorkdir: '/home' },
    { defaultWorkdir: '' },
    { hostname: 'sandbox.local', entropy: 'ab'.repeat(512), timestamp: new Date().toISOString() },
    { unknownField: 1 },
    { envVars: { A: 1 } },
    { envVars: { 'a\nb': 5 } },
    { envVars: ['A=1'] },
    { accessToken: 5 },
    { defaultWorkdir: 'relative' },
    { hostname: '-bad-' },
    { hostname: 'a'.repeat(64) },
    { entropy: '' },
    { entropy: 'ABCD' },
    { entropy: 'abc' },
    { entropy: 'ab'.repeat(513) },
    { timestamp: 12 },
    null,
    [],
    'init',
  ];
  for (const body of bodies)
    assert.equal(initProblems(body).length === 0, Check(EnvdInitBody, body), JSON.stringify(body));
  assert.deepEqual(initProblems({ envVars: { A: 1 }, defaultWorkdir: 'x', entropy: 'zz', accessToken: 1 }), [
    'envVars must map strings to strings',
    'accessToken must be a string',
    'defaultWorkdir must be absolute',
    'entropy must be 1 to 512 bytes in lower-case hex',
  ]);
  assert.deepEqual(initProblems(null), ['invalid init request: not a JSON object']);
});
