import type { FastifyInstance, FastifyRequest } from 'fastify';
import { missingScope } from '../auth/scopes.js';
import type { TeamQuotas } from '../services/team-quotas.js';
import type { Caller, TeamService } from '../services/team-service.js';
import { ApiError } from './errors.js';
import { routeArea } from './route-policy.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
}

/**
 * Every route registered on `app` after this needs a valid `X-API-KEY` (401 otherwise: a
 * missing, unknown or expired key) whose scopes allow the call (403 naming the scope it
 * lacks; which route needs which scope is `route-policy.ts`'s table), and takes a token of
 * the key's request rate (429 past its team's `requestsPerSecond`). The one place keys and
 * scopes are checked.
 */
export function requireApiKey(app: FastifyInstance, teams: TeamService, quotas: TeamQuotas): void {
  app.addHook('onRequest', async (request) => {
    const header = request.headers['x-api-key'];
    const caller = await teams.authenticate(typeof header === 'string' ? header : undefined);
    if (!caller) throw new ApiError(401, header ? 'invalid API key' : 'missing API key (X-API-KEY header)');
    request.caller = caller;
    await quotas.takeRequestToken(caller);
    // No route (a 404 is coming): nothing to allow.
    const url = request.routeOptions.url;
    if (url === undefined) return;
    const missing = missingScope(caller.scopes, request.method, routeArea(url));
    if (missing)
      throw new ApiError(
        403,
        `this API key lacks the scope "${missing}" needed for ${request.method} ${url} (it has: ${caller.scopes.join(', ')})`,
      );
  });
}

/** A preHandler that lets only the operator team's keys through (403 for others), saying what they may not do. */
export function operatorOnly(teams: TeamService, what: string) {
  return async (request: FastifyRequest): Promise<void> => teams.requireOperator(callerOf(request), what);
}

/** The authenticated caller of a request (set by `requireApiKey`). */
export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new ApiError(401, 'not authenticated');
  return request.caller;
}
