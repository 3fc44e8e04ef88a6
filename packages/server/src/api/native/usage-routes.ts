import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ForbiddenError, InvalidRequestError } from '../../services/errors.js';
import type { TeamService } from '../../services/team-service.js';
import { type UsageReports, usageCsv } from '../../services/usage-report.js';
import { callerOf } from '../authenticate.js';
import { ErrorBody } from '../e2b/schemas.js';

const Sums = {
  vcpuSeconds: Type.Number(),
  memoryGiBSeconds: Type.Number(),
  diskGiBSeconds: Type.Number(),
  cpuSeconds: Type.Number(),
  egressBytes: Type.Number(),
  cost: Type.Number(),
};
const UsageReportBody = Type.Object({
  from: Type.String(),
  to: Type.String(),
  groupBy: Type.String(),
  currency: Type.String(),
  items: Type.Array(
    Type.Object({
      teamID: Type.String(),
      sandboxID: Type.Optional(Type.String()),
      templateID: Type.Optional(Type.String()),
      day: Type.Optional(Type.String()),
      vcpus: Type.Integer(),
      ...Sums,
    }),
  ),
  total: Type.Object({ ...Sums, grossCost: Type.Number(), freeTier: Type.Number() }),
});
const UsageQuery = Type.Object({
  from: Type.Optional(Type.String({ description: 'ISO date-time; default: the start of this UTC month' })),
  to: Type.Optional(Type.String({ description: 'ISO date-time; default: now' })),
  groupBy: Type.Optional(
    Type.Union([Type.Literal('sandbox'), Type.Literal('template'), Type.Literal('day')], {
      default: 'sandbox',
    }),
  ),
  teamID: Type.Optional(
    Type.String({ pattern: '^[A-Za-z0-9_-]{1,100}$', description: 'the operator only: one team' }),
  ),
  format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])),
});

function dateParam(name: string, v: string | undefined, fallback: Date): Date {
  if (v === undefined) return fallback;
  const ms = Date.parse(v);
  if (Number.isNaN(ms))
    throw new InvalidRequestError(`${name} must be an ISO date-time, got ${JSON.stringify(v)}`);
  return new Date(ms);
}

/** The usage report (`GET /v1/usage`): a team's own usage; the operator's key sees every team's. */
export function registerUsageRoutes(base: FastifyInstance, teams: TeamService, reports: UsageReports): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/v1/usage',
    {
      schema: {
        tags: ['usage (aiva)'],
        summary:
          'Metered usage and its cost between from and to, grouped by sandbox, template or UTC day (CSV with Accept: text/csv or format=csv)',
        querystring: UsageQuery,
        response: { 200: UsageReportBody, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const q = request.query;
      const now = new Date();
      const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
      const operator = await teams.requireOperator(caller, 'see other teams’ usage').then(
        () => true,
        () => false,
      );
      if (!operator && q.teamID !== undefined && q.teamID !== caller.teamId)
        throw new ForbiddenError('only the operator team may see other teams’ usage');
      const report = await reports.report({
        from: dateParam('from', q.from, monthStart),
        to: dateParam('to', q.to, now),
        groupBy: q.groupBy ?? 'sandbox',
        teamId: operator ? q.teamID : caller.teamId,
      });
      const csv =
        q.format === 'csv' || (q.format === undefined && /\btext\/csv\b/.test(request.headers.accept ?? ''));
      // The CSV is text, not the JSON schema's body.
      if (csv) return reply.type('text/csv; charset=utf-8').send(usageCsv(report) as never);
      return report;
    },
  );
}
