import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { TeamQuotas } from '../services/team-quotas.js';
import type { Caller, TeamService } from '../services/team-service.js';
import { ApiError } from './errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
  }
}

/**
 * Every route registered on `app` after this needs a valid `X-API-KEY` (401 otherwise),
 * and takes a token of the key's request rate (429 past its team's `requestsPerSecond`).
 */
export function requireApiKey(app: FastifyInstance, teams: TeamService, quotas: TeamQuotas): void {
  app.addHook('onRequest', async (request) => {
    const header = request.headers['x-api-key'];
    const caller = await teams.authenticate(typeof header === 'string' ? header : undefined);
    if (!caller) throw new ApiError(401, header ? 'invalid API key' : 'missing API key (X-API-KEY header)');
    request.caller = caller;
    await quotas.takeRequestToken(caller);
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
