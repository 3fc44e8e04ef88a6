import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ForbiddenError } from '../../services/errors.js';
import type { SandboxService } from '../../services/sandbox-service.js';
import type { TeamMetrics } from '../../services/team-metrics.js';
import { callerOf } from '../authenticate.js';
import {
  BatchMetricsQuery,
  ErrorResponses,
  MaxTeamMetric,
  RefreshBody,
  SandboxMetric,
  SandboxParams,
  TeamMetric,
  TeamMetricsMaxQuery,
  TeamMetricsQuery,
  TeamParams,
} from './schemas.js';

/**
 * E2B's newer sandbox routes the e2b SDK does not call itself (its OpenAPI client has
 * them): refresh, the batch of latest samples, and a team's sandbox counts over time.
 */
export function registerMetricsRoutes(
  base: FastifyInstance,
  sandboxes: SandboxService,
  teamMetrics: TeamMetrics,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/sandboxes/:sandboxID/refreshes',
    {
      schema: {
        tags: ['sandboxes'],
        summary:
          'Keep a running sandbox alive `duration` more seconds (default and minimum 15, at most a day); never shortens its life',
        params: SandboxParams,
        body: RefreshBody,
        response: { 204: Type.Null(), ...ErrorResponses },
      },
      // The body is optional in E2B's API: none at all means the default duration.
      preValidation: async (request) => {
        request.body ??= {};
      },
    },
    async (request, reply) => {
      await sandboxes.refresh(callerOf(request), request.params.sandboxID, request.body.duration);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/sandboxes/metrics',
    {
      schema: {
        tags: ['sandboxes'],
        summary:
          'The newest CPU, memory and disk sample of each sandbox named in sandbox_ids (comma-separated, at most 100)',
        querystring: BatchMetricsQuery,
        response: {
          200: Type.Object({ sandboxes: Type.Record(Type.String(), SandboxMetric) }),
          ...ErrorResponses,
        },
      },
    },
    async (request) => ({
      sandboxes: await sandboxes.latestMetrics(
        callerOf(request),
        request.query.sandbox_ids.split(',').filter((id) => id !== ''),
      ),
    }),
  );

  /** A team may read only its own metrics: E2B's 403 otherwise. */
  const ownTeam = (callerTeam: string, teamID: string) => {
    if (callerTeam !== teamID)
      throw new ForbiddenError(
        `You (${callerTeam}) are not authorized to access this team's (${teamID}) metrics`,
      );
  };

  app.get(
    '/teams/:teamID/metrics',
    {
      schema: {
        tags: ['teams'],
        summary:
          "The team's sandboxes running at once (peak per step) and started per second, between start and end (unix s; default the last 7 days)",
        params: TeamParams,
        querystring: TeamMetricsQuery,
        response: { 200: Type.Array(TeamMetric), ...ErrorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      ownTeam(caller.teamId, request.params.teamID);
      const range = teamMetrics.range(request.query.start, request.query.end);
      return teamMetrics.series(caller.teamId, range);
    },
  );

  app.get(
    '/teams/:teamID/metrics/max',
    {
      schema: {
        tags: ['teams'],
        summary: 'The highest concurrent_sandboxes or sandbox_start_rate of the team between start and end',
        params: TeamParams,
        querystring: TeamMetricsMaxQuery,
        response: { 200: MaxTeamMetric, ...ErrorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      ownTeam(caller.teamId, request.params.teamID);
      const range = teamMetrics.range(request.query.start, request.query.end);
      return teamMetrics.max(caller.teamId, range, request.query.metric);
    },
  );
}
