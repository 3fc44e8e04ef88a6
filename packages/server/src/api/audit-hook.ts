import type { FastifyInstance } from 'fastify';
import type { AuditLog } from '../services/audit-log.js';
import { auditAction, auditTargets, MUTATING, unnamedMutatingRoute } from './route-policy.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** A successful mutating call's JSON answer, parsed, for the ids it made. */
    auditResponse?: unknown;
  }
}

/** Larger answers are not read for ids (no create answers anything near this). */
const MAX_PARSED = 256 * 1024;

/**
 * Appends every authenticated mutating call (POST, PUT, PATCH, DELETE) on `app`'s routes to
 * the audit log, with its action (`route-policy.ts`), the ids it named or made, its status
 * and the client's address. Written after the answer is sent, and not waited for: a
 * failing write is logged, never the request's failure. Calls without a valid key (401)
 * have no team and are not recorded. Registered on the authenticated routes only: the
 * node agents' `/v1/node/*`, the template upload links and sandbox traffic are not here.
 */
export function recordMutatingCalls(app: FastifyInstance, audit: AuditLog): void {
  // A mutating route with no action name would go unrecorded: refuse to start instead.
  app.addHook('onRoute', (route) => {
    const missing = unnamedMutatingRoute(route.method, route.url);
    if (missing) throw new Error(`${missing} has no audit action: add it to api/route-policy.ts`);
  });
  app.addHook('onSend', async (request, reply, payload) => {
    if (
      request.caller &&
      MUTATING.has(request.method) &&
      reply.statusCode < 400 &&
      typeof payload === 'string' &&
      payload.length <= MAX_PARSED
    ) {
      try {
        request.auditResponse = JSON.parse(payload);
      } catch {
        // not JSON: no ids in it
      }
    }
    return payload;
  });
  app.addHook('onResponse', async (request, reply) => {
    const caller = request.caller;
    const route = request.routeOptions.url;
    if (!caller || !route || !MUTATING.has(request.method)) return;
    const action = auditAction(request.method, route) ?? `${request.method} ${route}`;
    audit
      .append({
        keyId: caller.keyId,
        teamId: caller.teamId,
        action,
        method: request.method,
        route,
        targets: auditTargets(request.params, request.auditResponse),
        status: reply.statusCode,
        clientAddress: request.ip,
      })
      .catch((e: unknown) => request.log.warn({ err: e, action }, 'could not append to the audit log'));
  });
}
