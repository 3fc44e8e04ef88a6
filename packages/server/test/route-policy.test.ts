// Which scope each route needs and which audit action each mutating route records
// (`api/route-policy.ts`, `auth/scopes.ts`): the table the API's one scope check and the
// audit hook read.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auditAction, auditTargets, routeArea, unnamedMutatingRoute } from '../src/api/route-policy.js';
import { mayGrant, missingScope, type Scope } from '../src/auth/scopes.js';

test('each route is in the area of its resource; an unknown one needs admin', () => {
  for (const [url, area] of [
    ['/sandboxes', 'sandboxes'],
    ['/v2/sandboxes', 'sandboxes'],
    ['/sandboxes/:sandboxID/timeout', 'sandboxes'],
    ['/v2/sandboxes/:sandboxID/connect', 'sandboxes'],
    ['/snapshots', 'sandboxes'],
    ['/teams/:teamID/metrics/max', 'sandboxes'],
    ['/volumes/:volumeID', 'sandboxes'],
    ['/volumecontent/:volumeID/file', 'sandboxes'],
    ['/secrets/*', 'sandboxes'],
    ['/templates', 'templates'],
    ['/v3/templates', 'templates'],
    ['/v2/templates/:templateID/builds/:buildID', 'templates'],
    ['/templates/tags', 'templates'],
    ['/v1/keys', 'admin'],
    ['/v1/keys/:keyID', 'admin'],
    ['/v1/teams', 'admin'],
    ['/v1/audit', 'admin'],
    ['/v1/nodes/:node/drain', 'admin'],
    ['/v1/node-tokens', 'admin'],
    ['/v1/something-new', 'admin'],
    ['/sandboxesque', 'admin'],
  ] as const)
    assert.equal(routeArea(url), area, url);
});

test('read-only allows GET and HEAD anywhere; an area scope every method of its area; none: all', () => {
  const cases: [Scope[], string, string, Scope | undefined][] = [
    [[], 'POST', '/v1/keys', undefined],
    [['read-only'], 'GET', '/sandboxes', undefined],
    [['read-only'], 'HEAD', '/templates', undefined],
    [['read-only'], 'GET', '/v1/keys', undefined],
    [['read-only'], 'POST', '/sandboxes', 'sandboxes'],
    [['read-only'], 'DELETE', '/templates/:templateID', 'templates'],
    [['templates'], 'POST', '/sandboxes', 'sandboxes'],
    [['templates'], 'GET', '/sandboxes', 'sandboxes'],
    [['templates'], 'POST', '/v3/templates', undefined],
    [['sandboxes'], 'DELETE', '/sandboxes/:sandboxID', undefined],
    [['sandboxes'], 'POST', '/v1/keys', 'admin'],
    [['sandboxes', 'read-only'], 'GET', '/templates', undefined],
    [['admin'], 'POST', '/v1/teams', undefined],
    [['admin'], 'POST', '/sandboxes', 'sandboxes'],
  ];
  for (const [scopes, method, url, missing] of cases)
    assert.equal(missingScope(scopes, method, routeArea(url)), missing, `${scopes} ${method} ${url}`);
});

test('a key grants only scopes it holds; a full key grants any', () => {
  assert.ok(mayGrant([], []));
  assert.ok(mayGrant([], ['admin']));
  assert.ok(mayGrant(['admin', 'read-only'], ['read-only']));
  assert.ok(!mayGrant(['admin'], []));
  assert.ok(!mayGrant(['read-only'], ['sandboxes']));
});

test('mutating routes have actions; reads need none; a route the table misses is found', () => {
  assert.equal(auditAction('POST', '/sandboxes'), 'sandbox.create');
  assert.equal(auditAction('DELETE', '/sandboxes/:sandboxID'), 'sandbox.kill');
  assert.equal(auditAction('POST', '/sandboxes/:sandboxID/timeout'), 'sandbox.set_timeout');
  assert.equal(auditAction('POST', '/v1/keys'), 'key.create');
  assert.equal(auditAction('PUT', '/secrets/*'), 'unsupported');
  assert.equal(auditAction('POST', '/volumes'), 'volume.create');
  assert.equal(auditAction('DELETE', '/volumes/:volumeID'), 'volume.destroy');
  assert.equal(unnamedMutatingRoute(['GET', 'HEAD'], '/sandboxes'), undefined);
  assert.equal(unnamedMutatingRoute('POST', '/v2/templates/:templateID/builds/:buildID'), undefined);
  assert.equal(unnamedMutatingRoute(['GET', 'POST'], '/v1/widgets'), 'POST /v1/widgets');
});

test('targets: the path ids, and the ids a create made, never a secret', () => {
  assert.deepEqual(auditTargets({ sandboxID: 'sbx_1' }, undefined), ['sbx_1']);
  assert.deepEqual(auditTargets({}, { sandboxID: 'sbx_2', templateID: 'base', envdAccessToken: 'secret' }), [
    'sbx_2',
    'base',
  ]);
  assert.deepEqual(auditTargets({}, { key: 'e2b_secret', info: { id: 'key_1', name: 'n' } }), ['key_1']);
  assert.deepEqual(
    auditTargets({ sandboxID: 'sbx_1' }, [{ sandbox: { sandboxID: 'sbx_3' } }, { error: {} }]),
    ['sbx_1', 'sbx_3'],
  );
});
