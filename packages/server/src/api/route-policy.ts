import type { RouteArea } from '../auth/scopes.js';

/**
 * The API's routes as the key scopes and the audit log see them: which area (scope) each
 * route is in, and the audit action each mutating route records. One place, so that a new
 * route is named here or not at all (the audit hook refuses to start with a mutating route
 * that has no action: `unnamedMutatingRoute`).
 */

/** Route pattern prefixes (Fastify's `routeOptions.url`) and their area; the first match wins. */
const AREAS: [prefix: RegExp, area: RouteArea][] = [
  [/^\/(v[12]\/)?sandboxes(\/|$)/, 'sandboxes'],
  [/^\/snapshots(\/|$)/, 'sandboxes'],
  // The team's sandbox metrics.
  [/^\/teams\/:teamID\/metrics(\/|$)/, 'sandboxes'],
  // Volumes are what sandboxes mount (the content routes take the volume's token, not a key).
  [/^\/(volumes|volumecontent)(\/|$)/, 'sandboxes'],
  // Named environments are sandboxes with names (aiva's own routes).
  [/^\/v1\/environments(\/|$)/, 'sandboxes'],
  // E2B routes aiva answers 501 to: whatever the scope, the SDK must hear "not supported".
  [/^\/secrets(\/|$)/, 'sandboxes'],
  [/^\/(v[23]\/)?templates(\/|$)/, 'templates'],
  // Lifecycle events are the sandboxes'; webhooks and usage are the team's administration.
  [/^\/events\/sandboxes(\/|$)/, 'sandboxes'],
  [/^\/events\/webhooks(\/|$)/, 'admin'],
  [/^\/v1\/usage(\/|$)/, 'admin'],
  [/^\/v1\/(keys|teams|audit|nodes|node-tokens)(\/|$)/, 'admin'],
  // MCP's tools call the sandbox routes with the same key, where their own scopes are checked.
  [/^\/mcp$/, 'sandboxes'],
];

/**
 * Routes any valid key may call whatever its scopes: the console's session (a read-only
 * key signs in to a read-only console, and signs out).
 */
const EVERY_KEY = [/^\/v1\/console\/session$/];

export function everyKeyMay(url: string): boolean {
  return EVERY_KEY.some((r) => r.test(url));
}

/** The area of a route pattern; a route not in the table is `admin` (a full or admin key only). */
export function routeArea(url: string): RouteArea {
  return AREAS.find(([prefix]) => prefix.test(url))?.[1] ?? 'admin';
}

/** `METHOD pattern` → the audit log's action for that call. */
const ACTIONS: Record<string, string> = {
  'POST /mcp': 'mcp.request',
  'DELETE /mcp': 'mcp.request',
  'POST /sandboxes': 'sandbox.create',
  'POST /v2/sandboxes': 'sandbox.create',
  'DELETE /sandboxes/:sandboxID': 'sandbox.kill',
  'POST /sandboxes/:sandboxID/timeout': 'sandbox.set_timeout',
  'POST /sandboxes/:sandboxID/refreshes': 'sandbox.refresh',
  'PUT /sandboxes/:sandboxID/network': 'sandbox.network',
  'POST /sandboxes/:sandboxID/connect': 'sandbox.connect',
  'POST /v2/sandboxes/:sandboxID/connect': 'sandbox.connect',
  'POST /sandboxes/:sandboxID/pause': 'sandbox.pause',
  'POST /sandboxes/:sandboxID/fork': 'sandbox.fork',
  'POST /sandboxes/:sandboxID/snapshots': 'snapshot.create',
  'POST /v3/templates': 'template.create',
  'POST /v2/templates/:templateID/builds/:buildID': 'template.build',
  'PATCH /templates/:templateID': 'template.update',
  'PATCH /v2/templates/:templateID': 'template.update',
  'DELETE /templates/:templateID': 'template.delete',
  'POST /templates/tags': 'template.tag',
  'DELETE /templates/tags': 'template.untag',
  'POST /v1/keys': 'key.create',
  'DELETE /v1/keys/:keyID': 'key.delete',
  'POST /v1/teams': 'team.create',
  'PATCH /v1/teams/:teamID': 'team.update',
  'POST /v1/nodes/:node/cordon': 'node.cordon',
  'POST /v1/nodes/:node/uncordon': 'node.uncordon',
  'POST /v1/nodes/:node/drain': 'node.drain',
  'DELETE /v1/nodes/:node': 'node.remove',
  'POST /events/webhooks': 'webhook.create',
  'PATCH /events/webhooks/:webhookID': 'webhook.update',
  'DELETE /events/webhooks/:webhookID': 'webhook.delete',
  'POST /v1/node-tokens': 'node_token.create',
  'POST /volumes': 'volume.create',
  'DELETE /volumes/:volumeID': 'volume.destroy',
  'POST /v1/environments': 'environment.create',
  'POST /v1/environments/:name/start': 'environment.start',
  'POST /v1/environments/:name/stop': 'environment.stop',
  'DELETE /v1/environments/:name': 'environment.remove',
  'PATCH /v1/environments/:name/config': 'environment.configure',
  'POST /v1/environments/:name/deploy': 'environment.deploy',
  'DELETE /v1/node-tokens/:tokenID': 'node_token.revoke',
  'POST /v1/console/session': 'console.sign_in',
  'DELETE /v1/console/session': 'console.sign_out',
};

/** Every action the log may hold (for the audit API's filter). */
export const AUDIT_ACTIONS = [...new Set([...Object.values(ACTIONS), 'unsupported'])].sort();

export const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The audit action of a mutating call on a route pattern. */
export function auditAction(method: string, url: string): string | undefined {
  if (/^\/secrets(\/|$)/.test(url)) return 'unsupported';
  return ACTIONS[`${method} ${url}`];
}

/** The first `METHOD pattern` among a route's methods that mutates and has no action: a route this table misses. */
export function unnamedMutatingRoute(methods: string | string[], url: string): string | undefined {
  for (const method of [methods].flat())
    if (MUTATING.has(method) && !auditAction(method, url)) return `${method} ${url}`;
  return undefined;
}

/** Response fields that hold the id of what a call made. */
const MADE_ID_FIELDS = ['sandboxID', 'templateID', 'buildID', 'snapshotID', 'volumeID', 'teamId', 'id'];

/**
 * The ids a call named (its path parameters) or made (ids in its JSON response: a create's
 * sandbox, template, build, snapshot, team, webhook; `info.id` of a key or node token; each fork's
 * sandbox). Nothing else of the response is kept — a key's or token's secret never is.
 */
export function auditTargets(params: unknown, response: unknown): string[] {
  const ids: string[] = [];
  const add = (v: unknown) => {
    if (typeof v === 'string' && v.length > 0 && v.length <= 200 && !ids.includes(v)) ids.push(v);
  };
  if (params && typeof params === 'object') for (const v of Object.values(params)) add(v);
  const fromObject = (o: unknown) => {
    if (!o || typeof o !== 'object') return;
    const r = o as Record<string, unknown>;
    for (const f of MADE_ID_FIELDS) add(r[f]);
    if (r.info && typeof r.info === 'object') add((r.info as Record<string, unknown>).id);
    if (r.sandbox && typeof r.sandbox === 'object') add((r.sandbox as Record<string, unknown>).sandboxID);
  };
  if (Array.isArray(response)) for (const item of response.slice(0, 100)) fromObject(item);
  else fromObject(response);
  return ids;
}
