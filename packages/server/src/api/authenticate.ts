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
    const header = apiKeyOf(request);
    const caller = await teams.authenticate(header);
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

/**
 * On `/mcp` only, the key may come as `Authorization: Bearer <key>`, as MCP clients send
 * their credentials (elsewhere a bearer token is E2B's access token, not a key).
 */
function mcpBearer(request: FastifyRequest): string | undefined {
  if (request.routeOptions.url !== '/mcp') return undefined;
  return /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
}

/** The API key a request carries: its X-API-KEY header (or, on `/mcp`, its bearer token). */
export function apiKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['x-api-key'];
  return typeof header === 'string' ? header : mcpBearer(request);
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
