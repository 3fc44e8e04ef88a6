import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { NodeRegistry } from '../../nodes/node-registry.js';
import type { TeamService } from '../../services/team-service.js';
import { operatorOnly } from '../authenticate.js';
import { ErrorBody } from '../e2b/schemas.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const NodeInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  state: Type.String(),
  labels: Type.Record(Type.String(), Type.String()),
  aivaVersion: Type.String(),
  joinedAt: Type.String(),
  lastSeenAt: Nullable(Type.String()),
  sandboxes: Type.Integer(),
  tunnel: Type.Boolean(),
  /** How its sandboxes' traffic goes now. */
  mode: Type.Enum(['tunnel', 'direct']),
  /** Its direct listener and, while the server cannot use it, why. */
  direct: Nullable(Type.Object({ address: Type.String(), error: Type.Optional(Type.String()) })),
  capacity: Nullable(Type.Record(Type.String(), Type.Number())),
  free: Nullable(Type.Record(Type.String(), Type.Number())),
});
const Params = Type.Object({ node: Type.String({ minLength: 1, maxLength: 100 }) });
const tags = ['nodes (aiva)'];

/** The cluster's nodes (`aiva node ls | cordon | uncordon | drain | rm`): operator team only. */
export function registerNodeRoutes(base: FastifyInstance, teams: TeamService, registry: NodeRegistry): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  const operator = operatorOnly(teams, 'manage the cluster’s nodes');
  app.get(
    '/v1/nodes',
    {
      preHandler: operator,
      schema: {
        tags,
        summary: "The cluster's nodes: state, labels, capacity, sandboxes (operator team only)",
        response: { 200: Type.Array(NodeInfo), 401: ErrorBody, 403: ErrorBody },
      },
    },
    async () => registry.list(),
  );
  for (const [action, to] of [
    ['cordon', 'cordoned'],
    ['uncordon', 'ready'],
    ['drain', 'draining'],
  ] as const)
    app.post(
      `/v1/nodes/:node/${action}`,
      {
        preHandler: operator,
        schema: {
          tags,
          summary: `${action[0]?.toUpperCase()}${action.slice(1)} a node, by id or name (operator team only)`,
          params: Params,
          response: { 200: NodeInfo, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
        },
      },
      async (request) => registry.setState(request.params.node, to),
    );
  app.delete(
    '/v1/nodes/:node',
    {
      preHandler: operator,
      schema: {
        tags,
        summary:
          'Remove a node with no live sandboxes, by id or name: its credential stops working (operator team only)',
        params: Params,
        response: { 204: Type.Null(), 401: ErrorBody, 403: ErrorBody, 404: ErrorBody, 409: ErrorBody },
      },
    },
    async (request, reply) => {
      await registry.remove(request.params.node);
      return reply.code(204).send(null);
    },
  );
}
