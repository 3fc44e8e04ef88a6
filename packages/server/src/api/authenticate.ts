import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CONSOLE_HEADER, csrfRefusal, SESSION_COOKIE } from '../auth/console-session-rules.js';
import { missingScope } from '../auth/scopes.js';
import type { ConsoleSessions, SessionCaller } from '../services/console-sessions.js';
import type { TeamQuotas } from '../services/team-quotas.js';
import type { Caller, TeamService } from '../services/team-service.js';
import { ApiError } from './errors.js';
import { everyKeyMay, routeArea } from './route-policy.js';

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
    /** The console session the call came with (its cookie), when it came with no API key. */
    consoleSession?: SessionCaller;
    /** Whether the call's credential still holds (a long stream asks now and then). */
    stillAuthenticated?: () => Promise<boolean>;
  }
  interface FastifyContextConfig {
    /** The route checks credentials itself (the console's sign-in takes a key in its body). */
    authenticatesItself?: boolean;
  }
}

/**
 * Every route registered on `app` after this needs a valid `X-API-KEY` (401 otherwise: a
 * missing, unknown or expired key) — or, without one, the web console's session cookie,
 * which stands for the key it was made from (401 once signed out, expired or its key
 * gone; a call that changes something must also pass the CSRF check, else 403) — whose
 * scopes allow the call (403 naming the scope it lacks; which route needs which scope is
 * `route-policy.ts`'s table), and takes a token of the key's request rate (429 past its
 * team's `requestsPerSecond`). The one place keys and scopes are checked.
 */
export function requireApiKey(
  app: FastifyInstance,
  teams: TeamService,
  quotas: TeamQuotas,
  sessions: ConsoleSessions,
): void {
  app.addHook('onRequest', async (request) => {
    if (request.routeOptions.config?.authenticatesItself) return;
    const caller = await identify(request, teams, sessions);
    request.caller = caller;
    await quotas.takeRequestToken(caller);
    // No route (a 404 is coming): nothing to allow.
    const url = request.routeOptions.url;
    if (url === undefined || everyKeyMay(url)) return;
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

/** The caller of a request: its `X-API-KEY`, else its console session. */
async function identify(
  request: FastifyRequest,
  teams: TeamService,
  sessions: ConsoleSessions,
): Promise<Caller> {
  const key = apiKeyOf(request);
  const token = request.cookies?.[SESSION_COOKIE];
  if (key !== undefined || request.headers['x-api-key'] !== undefined || !token) {
    const caller = await teams.authenticate(key);
    if (!caller) throw new ApiError(401, key ? 'invalid API key' : 'missing API key (X-API-KEY header)');
    request.stillAuthenticated = async () =>
      (await teams.authenticate(key).catch(() => undefined)) !== undefined;
    return caller;
  }
  const session = await sessions.resolve(token);
  if (!session) throw new ApiError(401, 'console session ended (signed out or expired): sign in again');
  const origin = request.headers.origin;
  const marker = request.headers[CONSOLE_HEADER];
  const refusal = csrfRefusal(request.method, {
    host: request.headers.host,
    origin: typeof origin === 'string' ? origin : undefined,
    console: typeof marker === 'string' ? marker : undefined,
  });
  if (refusal) throw new ApiError(403, refusal);
  request.consoleSession = session;
  request.stillAuthenticated = async () =>
    (await sessions.resolve(token).catch(() => undefined)) !== undefined;
  return session;
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
