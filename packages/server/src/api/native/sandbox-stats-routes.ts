import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ForbiddenError } from '../../services/errors.js';
import { SandboxStatsService, STATS_RANGES } from '../../services/sandbox-stats.js';
import type { TeamService } from '../../services/team-service.js';
import { callerOf } from '../authenticate.js';
import { ErrorBody } from '../e2b/schemas.js';

const States = Type.Object({ creating: Type.Integer(), running: Type.Integer(), paused: Type.Integer() });
const Nullable = Type.Union([Type.Number(), Type.Null()]);
const StatsBody = Type.Object({
  range: Type.String(),
  stepSeconds: Type.Integer(),
  from: Type.String(),
  to: Type.String(),
  scope: Type.Union([Type.Literal('team'), Type.Literal('all')]),
  states: States,
  nodes: Type.Optional(
    Type.Array(
      Type.Object({
        nodeId: Type.String(),
        states: States,
        name: Type.Optional(Type.String()),
        state: Type.Optional(Type.String()),
        capacity: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Number()), Type.Null()])),
        free: Type.Optional(Type.Union([Type.Record(Type.String(), Type.Number()), Type.Null()])),
      }),
    ),
  ),
  steps: Type.Array(
    Type.Object({
      time: Type.String(),
      timestampUnix: Type.Number(),
      creates: Type.Integer(),
      failures: Type.Integer(),
      createFailures: Type.Integer(),
      createP50Ms: Nullable,
      createP95Ms: Nullable,
    }),
  ),
});
const StatsQuery = Type.Object({
  range: Type.Optional(
    Type.String({ maxLength: 8, description: `one of ${Object.keys(STATS_RANGES).join(', ')} (default 1h)` }),
  ),
  teamID: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z0-9_-]{1,100}$',
      description: 'the operator only: one team (default: every team)',
    }),
  ),
});

/**
 * `GET /v1/sandboxes/stats` (area `sandboxes`): the console dashboard's numbers — live
 * sandboxes by state, and per step of the range creates, failures and create latency
 * (p50, p95). A team's key sees its own; the operator's every team's, with the live
 * sandboxes by node, or one team's with `teamID`.
 */
export function registerSandboxStatsRoutes(
  base: FastifyInstance,
  teams: TeamService,
  stats: SandboxStatsService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/v1/sandboxes/stats',
    {
      schema: {
        tags: ['sandboxes (aiva)'],
        summary:
          'Live sandboxes by state; per step of the range (15m, 1h, 6h, 24h) creates, failures and create latency p50/p95 (this replica’s creates)',
        querystring: StatsQuery,
        response: { 200: StatsBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const range = SandboxStatsService.range(request.query.range);
      const operator = await teams.isOperator(caller);
      const asked = request.query.teamID;
      if (!operator && asked !== undefined && asked !== caller.teamId)
        throw new ForbiddenError('only the operator team may see other teams’ stats');
      return stats.stats(range, operator ? asked : caller.teamId);
    },
  );
}
