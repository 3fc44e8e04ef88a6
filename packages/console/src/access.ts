import type { Session } from './api.js';

/** The areas of the API a key's scopes open (the server's `route-policy.ts` names each route's). */
export type Area = 'sandboxes' | 'templates' | 'admin';

/** Whether the session's key may read the area's routes (no scopes: everything; `read-only`: every GET). */
export function mayRead(s: Session, area: Area): boolean {
  return s.scopes.length === 0 || s.scopes.includes('read-only') || s.scopes.includes(area);
}

/** Whether the session's key may change things in the area. */
export function mayChange(s: Session, area: Area): boolean {
  return s.scopes.length === 0 || s.scopes.includes(area);
}
