import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { AuditLog } from '../../services/audit-log.js';
import type { TeamService } from '../../services/team-service.js';
import { callerOf } from '../authenticate.js';
import { ErrorBody, Text } from '../e2b/schemas.js';

const AuditEntry = Type.Object({
  id: Type.String(),
  time: Type.String(),
  keyId: Type.String(),
  teamId: Type.String(),
  action: Type.String({ description: 'sandbox.create, sandbox.kill, template.build, key.create …' }),
  method: Type.String(),
  route: Type.String(),
  targets: Type.Array(Type.String(), { description: 'the ids the call named or made' }),
  status: Type.Integer(),
  result: Type.Union([Type.Literal('ok'), Type.Literal('error')]),
  clientAddress: Type.Optional(Type.String()),
});

/** The audit log (aiva's own): a team reads its own entries, the operator team every team's. */
export function registerAuditRoutes(base: FastifyInstance, teams: TeamService, audit: AuditLog): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/v1/audit',
    {
      schema: {
        tags: ['audit (aiva)'],
        summary:
          'Mutating API calls, newest first: the caller’s team’s (every team’s for the operator team); pass nextToken back as cursor for the next page',
        querystring: Type.Object({
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 100 })),
          cursor: Type.Optional(Text({ maxLength: 500 })),
          action: Type.Optional(Text({ maxLength: 100 })),
          target: Type.Optional(Text({ maxLength: 200 })),
        }),
        response: {
          200: Type.Object({ entries: Type.Array(AuditEntry), nextToken: Type.Optional(Type.String()) }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
        },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const teamId = (await teams.isOperator(caller)) ? undefined : caller.teamId;
      return audit.list(teamId, request.query);
    },
  );
}
