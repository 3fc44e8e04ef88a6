// Random requests at every route (fast-check): whatever comes in, the server answers
// with a 4xx and E2B's error body or a success, never a 5xx; it leaks no sandbox and
// keeps answering.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Sandbox } from 'e2b';
import fc from 'fast-check';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

let up: AivaUp;
let existing: Sandbox;
before(async () => {
  up = await aivaUp();
  useServer(up);
  existing = await Sandbox.create({ metadata: { fuzz: 'target' } });
});
after(async () => {
  assert.equal(await up.stop(), 0);
  await removeHome(up.home);
});
// Registered after the server's own `after`: hooks run in the order they were added.
checkHostLeaks();

const ROUTES = [
  'POST /v2/sandboxes',
  'POST /sandboxes',
  'GET /v2/sandboxes',
  'GET /sandboxes',
  'GET /sandboxes/:id',
  'DELETE /sandboxes/:id',
  'POST /sandboxes/:id/timeout',
  'POST /v2/sandboxes/:id/connect',
  'POST /sandboxes/:id/connect',
  'POST /sandboxes/:id/pause',
  'GET /sandboxes/:id/metrics',
  'POST /sandboxes/:id/refreshes',
  'GET /sandboxes/metrics',
  'GET /teams/:id/metrics',
  'GET /teams/:id/metrics/max',
  'GET /v2/sandboxes/:id/logs',
  'PUT /sandboxes/:id/network',
  'POST /sandboxes/:id/fork',
  'POST /sandboxes/:id/snapshots',
  'GET /snapshots',
  'DELETE /templates/:id',
  'GET /templates/aliases/:id',
  'GET /v1/keys',
  'POST /v1/keys',
  'DELETE /v1/keys/:id',
  'GET /v1/teams',
  'POST /v1/teams',
  'GET /v1/audit',
  'PATCH /v1/teams/:id',
  'GET /v1/usage',
  'GET /events/sandboxes',
  'GET /events/sandboxes/:id',
  // Not POST or PATCH of a webhook: a random URL could send a delivery off this machine.
  'GET /events/webhooks',
  'GET /events/webhooks/:id',
  'DELETE /events/webhooks/:id',
  'GET /events/webhooks/:id/deliveries',
  'GET /v1/node-tokens',
  'POST /v1/node-tokens',
  'GET /volumes',
  'POST /volumes',
  'GET /volumes/:id',
  'DELETE /volumes/:id',
  // The content routes take a volume's token: these test that refusal and the schemas.
  'GET /volumecontent/:id/dir',
  'POST /volumecontent/:id/dir',
  'GET /volumecontent/:id/path',
  'PATCH /volumecontent/:id/path',
  'DELETE /volumecontent/:id/path',
  'GET /volumecontent/:id/file',
  'PUT /volumecontent/:id/file',
  'DELETE /v1/node-tokens/:id',
  'POST /v1/console/session',
  'GET /v1/console/session',
  'GET /v1/sandboxes/stats',
  'DELETE /v1/console/session',
  'GET /',
  'GET /ui/sandboxes/:id',
  'GET /health',
  'GET /openapi.json',
  'GET /metrics',
];

const segment = fc.oneof(
  fc.constant('__existing__'),
  fc.constant('base'),
  fc.stringMatching(/^[a-z0-9]{1,30}$/),
  fc.string({ maxLength: 40 }).map(encodeURIComponent),
  fc.constant('%00'),
  fc.constant('..%2F..%2Fetc'),
);

const body = fc.oneof(
  fc.constant(undefined),
  fc.json().map((j) => ({ type: 'application/json', text: j })),
  fc
    .record(
      {
        templateID: fc.oneof(fc.constant('no-such-template'), fc.string({ maxLength: 300 }), fc.integer()),
        timeout: fc.oneof(fc.integer({ min: -1_000_000, max: 10_000_000 }), fc.double(), fc.string()),
        metadata: fc.oneof(
          fc.dictionary(fc.string({ maxLength: 300 }), fc.string({ maxLength: 2000 })),
          fc.string(),
          fc.constant(null),
        ),
        envVars: fc.oneof(fc.dictionary(fc.string(), fc.oneof(fc.string(), fc.integer())), fc.constant([])),
        name: fc.oneof(fc.string({ maxLength: 200 }), fc.integer()),
        duration: fc.oneof(fc.integer(), fc.double(), fc.string()),
        network: fc.oneof(
          fc.record(
            {
              httpsPorts: fc.oneof(fc.array(fc.integer({ min: -10, max: 70_000 })), fc.string()),
              maskRequestHost: fc.string({ maxLength: 40 }),
              rules: fc.oneof(fc.constant({}), fc.dictionary(fc.string(), fc.array(fc.object()))),
              egressProxy: fc.oneof(fc.constant(null), fc.object()),
            },
            { requiredKeys: [] },
          ),
          fc.string(),
        ),
        iam: fc.oneof(fc.constant({}), fc.object()),
        volumeMounts: fc.oneof(fc.constant([]), fc.array(fc.object())),
      },
      { requiredKeys: [] },
    )
    .map((o) => ({ type: 'application/json', text: JSON.stringify(o) })),
  fc.string({ maxLength: 200 }).map((t) => ({ type: 'application/json', text: t })),
  fc
    .uint8Array({ maxLength: 200 })
    .map((b) => ({ type: 'application/octet-stream', text: Buffer.from(b).toString('latin1') })),
);

const query = fc.oneof(
  fc.constant(''),
  fc
    .record(
      {
        limit: fc.oneof(fc.integer({ min: -5, max: 1000 }), fc.string({ maxLength: 5 })),
        state: fc.oneof(fc.constant('running,paused'), fc.string({ maxLength: 20 })),
        metadata: fc.string({ maxLength: 50 }),
        nextToken: fc.string({ maxLength: 50 }),
        order: fc.oneof(fc.constant('asc'), fc.string({ maxLength: 5 })),
        startedAfter: fc.oneof(
          fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())),
          fc.string(),
        ),
        start: fc.integer(),
        end: fc.oneof(fc.integer(), fc.double()),
        metric: fc.oneof(fc.constant('concurrent_sandboxes'), fc.constant('sandbox_start_rate'), fc.string()),
        sandbox_ids: fc.oneof(fc.constant('__existing__'), fc.string({ maxLength: 100 })),
        cursor: fc.string({ maxLength: 10 }),
        action: fc.oneof(fc.constant('sandbox.create'), fc.string({ maxLength: 120 })),
        target: fc.oneof(fc.constant('__existing__'), fc.string({ maxLength: 250 })),
      },
      { requiredKeys: [] },
    )
    .map(
      (q) =>
        `?${new URLSearchParams(Object.entries(q).map(([k, v]): [string, string] => [k, String(v)])).toString()}`,
    ),
);

test('no random request gets a 5xx, leaks a sandbox or stops the server', async () => {
  const statuses = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...ROUTES),
      segment,
      query,
      body,
      fc.constantFrom('valid', 'none', 'garbage'),
      async (route, seg, q, b, auth) => {
        const [method, template] = route.split(' ') as [string, string];
        const id = seg === '__existing__' ? existing.sandboxId : seg;
        const path = template.replace(':id', id);
        const headers: Record<string, string> = {};
        if (auth === 'valid') headers['x-api-key'] = up.apiKey;
        if (auth === 'garbage') headers['x-api-key'] = 'e2b_not-a-key';
        // Never kill, pause, fork or re-police the target, so that every run sees the same world.
        if (
          id === existing.sandboxId &&
          (method === 'DELETE' || /\/(pause|timeout|fork|network)$/.test(path))
        )
          return;
        if (b) headers['content-type'] = b.type;
        const res = await fetch(`${up.url}${path}${q.replace('__existing__', existing.sandboxId)}`, {
          method,
          headers,
          body: method === 'GET' || method === 'DELETE' ? undefined : b?.text,
        });
        const text = await res.text();
        statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        assert.ok(res.status < 500, `${method} ${path}${q} → ${res.status} ${text}`);
        if (res.status >= 400 && res.headers.get('content-type')?.includes('json')) {
          const err = JSON.parse(text) as { code?: unknown; message?: unknown };
          assert.equal(err.code, res.status, text);
          assert.equal(typeof err.message, 'string', text);
        }
      },
    ),
    { numRuns: 400 },
  );
  // Whatever the fuzz made, it can be found and killed; then only the target is left.
  const p = Sandbox.list();
  const all = [];
  while (p.hasNext) all.push(...(await p.nextItems()));
  for (const s of all) if (s.sandboxId !== existing.sandboxId) await Sandbox.kill(s.sandboxId);
  assert.equal((await fetch(`${up.url}/health`)).status, 200);
  assert.equal((await existing.commands.run('echo still fine')).stdout, 'still fine\n');
  assert.ok((statuses.get(400) ?? 0) > 0 && (statuses.get(401) ?? 0) > 0, JSON.stringify([...statuses]));
});
