import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { InvalidRequestError, NotFoundError } from '../../services/errors.js';
import { MAX_TOKEN_SECONDS, type NodeTokenService } from '../../services/node-token-service.js';
import type { TeamService } from '../../services/team-service.js';
import { callerOf, operatorOnly } from '../authenticate.js';
import { ErrorBody, Text } from '../e2b/schemas.js';

const Timestamp = Type.Union([Type.String(), Type.Null()]);
const NodeTokenInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  prefix: Type.String(),
  state: Type.Union([Type.Literal('active'), Type.Literal('expired'), Type.Literal('revoked')]),
  createdByTeam: Type.Union([Type.String(), Type.Null()]),
  createdByKey: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(),
  expiresAt: Timestamp,
  revokedAt: Timestamp,
  lastUsedAt: Timestamp,
});
const tags = ['nodes (aiva)'];
const CREATE_FIELDS = new Set(['name', 'expiresInSeconds']);

/**
 * The join tokens nodes join the cluster with (`aiva node token …`). Operator team only:
 * a token lets a machine run every team's sandboxes.
 */
export function registerNodeTokenRoutes(
  base: FastifyInstance,
  teams: TeamService,
  tokens: NodeTokenService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const operator = operatorOnly(teams, 'manage node join tokens');

  app.get(
    '/v1/node-tokens',
    {
      preHandler: operator,
      schema: {
        tags,
        summary: 'The node join tokens, without their secrets (operator team only)',
        querystring: Type.Object({
          revoked: Type.Optional(Type.Boolean({ description: 'list revoked tokens too' })),
        }),
        response: { 200: Type.Array(NodeTokenInfo), 400: ErrorBody, 401: ErrorBody, 403: ErrorBody },
      },
    },
    async (request) => tokens.list({ revoked: request.query.revoked }),
  );
  app.post(
    '/v1/node-tokens',
    {
      preHandler: operator,
      schema: {
        tags,
        summary: 'Create a node join token (operator team only); the token is in this response only',
        body: Type.Object({
          name: Type.Optional(Text({ maxLength: 100 })),
          expiresInSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_TOKEN_SECONDS })),
        }),
        response: {
          201: Type.Object({ token: Type.String(), info: NodeTokenInfo }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
        },
      },
    },
    async (request, reply) => {
      const body = request.body ?? {};
      // A misspelt `expiresInSeconds` must not make a token that never expires.
      const unknown = Object.keys(body).filter((k) => !CREATE_FIELDS.has(k));
      if (unknown.length > 0)
        throw new InvalidRequestError(
          `body has unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (known: ${[...CREATE_FIELDS].join(', ')})`,
        );
      return reply.code(201).send(
        await tokens.create({
          name: body.name,
          expiresInSeconds: body.expiresInSeconds,
          createdBy: callerOf(request),
        }),
      );
    },
  );
  app.delete(
    '/v1/node-tokens/:tokenID',
    {
      preHandler: operator,
      schema: {
        tags,
        summary: 'Revoke a node join token: no node joins with it after this (operator team only)',
        params: Type.Object({ tokenID: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }) }),
        response: { 204: Type.Null(), 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
      },
    },
    async (request, reply) => {
      if (!(await tokens.revoke(request.params.tokenID)))
        throw new NotFoundError(`node token ${request.params.tokenID} not found`);
      return reply.code(204).send(null);
    },
  );
}
