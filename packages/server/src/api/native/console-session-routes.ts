import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { SESSION_COOKIE, sessionCookieOptions } from '../../auth/console-session-rules.js';
import { type ConsoleSessions, infoOf } from '../../services/console-sessions.js';
import { NotFoundError } from '../../services/errors.js';
import type { TeamQuotas } from '../../services/team-quotas.js';
import type { TeamService } from '../../services/team-service.js';
import { ErrorBody } from '../e2b/schemas.js';

const SessionInfo = Type.Object({
  teamId: Type.String(),
  keyId: Type.String(),
  scopes: Type.Array(Type.String(), { description: 'the key’s scopes; empty: full access' }),
  expiresAt: Type.String({ description: 'when the session ends at the latest' }),
  operator: Type.Optional(
    Type.Boolean({ description: 'whether the key is of the operator team (which may see every team)' }),
  ),
});
const tags = ['console (aiva)'];
const errors = { 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 429: ErrorBody };

/**
 * The web console's sign-in: `POST /v1/console/session {apiKey}` checks the key as the
 * API does and answers with an HttpOnly, SameSite=Strict cookie holding a new session's
 * token (Secure over TLS); `GET` says whom the session stands for; `DELETE` signs out
 * (the session is deleted and the cookie cleared). The key itself is never sent back.
 */
export function registerConsoleSessionRoutes(
  base: FastifyInstance,
  sessions: ConsoleSessions,
  quotas: TeamQuotas,
  teams: TeamService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.post(
    '/v1/console/session',
    {
      config: { authenticatesItself: true },
      schema: {
        tags,
        summary: 'Sign in to the console with an API key (sets the session cookie)',
        security: [],
        body: Type.Object(
          { apiKey: Type.String({ minLength: 1, maxLength: 256 }) },
          { additionalProperties: false },
        ),
        response: { 201: SessionInfo, ...errors },
      },
    },
    async (request, reply) => {
      const key = await sessions.authenticate(request.body.apiKey);
      // Recorded in the audit log as the key's sign-in.
      request.caller = key;
      await quotas.takeRequestToken(key);
      const { token, caller, info } = await sessions.open(key);
      void reply.setCookie(
        SESSION_COOKIE,
        token,
        sessionCookieOptions(caller.expiresAt, request.protocol === 'https'),
      );
      return reply.code(201).send({ ...info, operator: await teams.isOperator(caller) });
    },
  );
  app.get(
    '/v1/console/session',
    {
      schema: {
        tags,
        summary: 'The console session the cookie holds',
        response: { 200: SessionInfo, ...errors },
      },
    },
    async (request) => {
      const session = sessionOf(request);
      return { ...infoOf(session), operator: await teams.isOperator(session) };
    },
  );
  app.delete(
    '/v1/console/session',
    {
      schema: {
        tags,
        summary: 'Sign out of the console (ends the session, clears the cookie)',
        response: { 204: Type.Null(), ...errors },
      },
    },
    async (request, reply) => {
      await sessions.close(sessionOf(request).sessionId);
      void reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict' });
      return reply.code(204).send(null);
    },
  );
}

function sessionOf(request: FastifyRequest) {
  if (!request.consoleSession)
    throw new NotFoundError('this call came with an API key, not a console session (sign in at /)');
  return request.consoleSession;
}
