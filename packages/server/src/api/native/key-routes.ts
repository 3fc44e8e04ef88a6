import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { SCOPES } from '../../auth/scopes.js';
import { InvalidRequestError, NotFoundError } from '../../services/errors.js';
import type { TeamService } from '../../services/team-service.js';
import { callerOf } from '../authenticate.js';
import { ErrorBody, Text } from '../e2b/schemas.js';

const ApiKeyInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String(),
  teamId: Type.String(),
  createdAt: Type.String(),
  lastUsedAt: Type.Union([Type.String(), Type.Null()], { description: 'updated at most once a minute' }),
  expiresAt: Type.Union([Type.String(), Type.Null()]),
  scopes: Type.Array(Type.String(), { description: 'empty: full access' }),
});
/** A year: longer-lived keys are keys without an expiry. */
const MAX_KEY_SECONDS = 366 * 24 * 3600;
const Scope = Type.Union([
  Type.Literal('read-only'),
  Type.Literal('sandboxes'),
  Type.Literal('templates'),
  Type.Literal('admin'),
]);
const CREATE_FIELDS = new Set(['name', 'scopes', 'expiresInSeconds']);
const tags = ['keys (aiva)'];

/** aiva's own API-key management (E2B has no equivalent in its public API). */
export function registerKeyRoutes(base: FastifyInstance, teams: TeamService): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/v1/keys',
    {
      schema: {
        tags,
        summary: "The caller's team's API keys",
        response: { 200: Type.Array(ApiKeyInfo), 401: ErrorBody },
      },
    },
    async (request) => teams.listKeys(callerOf(request).teamId),
  );
  app.post(
    '/v1/keys',
    {
      schema: {
        tags,
        summary:
          'Create an API key for the caller’s team; the key is in this response only. No scopes: full access; a key with scopes may only create keys with some of its own',
        body: Type.Object({
          name: Text({ minLength: 1, maxLength: 100 }),
          scopes: Type.Optional(Type.Array(Scope, { maxItems: SCOPES.length })),
          expiresInSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_KEY_SECONDS })),
        }),
        response: {
          201: Type.Object({ key: Type.String(), info: ApiKeyInfo }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
        },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      // A misspelt `expiresInSeconds` or `scopes` must not make a key that never expires or may do anything.
      const unknown = Object.keys(request.body).filter((k) => !CREATE_FIELDS.has(k));
      if (unknown.length > 0)
        throw new InvalidRequestError(
          `body has unknown field(s) ${unknown.join(', ')} (known: name, scopes, expiresInSeconds)`,
        );
      return reply.code(201).send(await teams.createKey(caller.teamId, request.body, caller));
    },
  );
  app.delete(
    '/v1/keys/:keyID',
    {
      schema: {
        tags,
        summary: 'Remove an API key of the caller’s team',
        params: Type.Object({ keyID: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }) }),
        response: { 204: Type.Null(), 401: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (request, reply) => {
      if (!(await teams.removeKey(callerOf(request).teamId, request.params.keyID)))
        throw new NotFoundError(`key ${request.params.keyID} not found`);
      return reply.code(204).send(null);
    },
  );
}
