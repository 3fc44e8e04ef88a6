/**
 * What an API key may do. A key with no scopes may do everything its team may (keys made
 * before scopes existed, and `aiva keys create` without `--scope`); a key with scopes may
 * do what any of them allows:
 *
 * - `read-only`: GET and HEAD on every route the team may see;
 * - `sandboxes`: every method on the sandbox and snapshot routes (and sandbox metrics);
 * - `templates`: every method on the template routes;
 * - `admin`: every method on the key, team, audit, node and node-token routes (the
 *   operator's routes still need a key of the operator team as well).
 *
 * Which area a route is in is `api/route-policy.ts`'s table.
 */
export const SCOPES = ['read-only', 'sandboxes', 'templates', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

/** The scope that allows every method on a route of the area. */
export type RouteArea = Exclude<Scope, 'read-only'>;

export function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

/**
 * The scope a key lacks for `method` on a route of `area`, or undefined if it may. The one
 * it lacks is the area's (read-only would do only for a GET or HEAD).
 */
export function missingScope(scopes: readonly Scope[], method: string, area: RouteArea): Scope | undefined {
  if (scopes.length === 0 || scopes.includes(area)) return undefined;
  if ((method === 'GET' || method === 'HEAD') && scopes.includes('read-only')) return undefined;
  return area;
}

/** Whether a key with `held` scopes may make a key with `wanted` ones: no more than it has itself. */
export function mayGrant(held: readonly Scope[], wanted: readonly Scope[]): boolean {
  if (held.length === 0) return true;
  return wanted.length > 0 && wanted.every((s) => held.includes(s));
}
