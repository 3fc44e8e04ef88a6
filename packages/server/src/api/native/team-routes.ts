import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { TeamService } from '../../services/team-service.js';
import { callerOf, operatorOnly } from '../authenticate.js';
import { ErrorBody, MAX_TIMEOUT_S, Text } from '../e2b/schemas.js';

/**
 * A quota: a whole number from 1, or null for none beyond the server's default. One type
 * list, not a union with null: the validator would coerce 0 or false to null for that.
 */
const Limit = (description: string, maximum = 1_000_000_000) =>
  Type.Unsafe<number | null>({ type: ['integer', 'null'], minimum: 1, maximum, description });

const QuotaFields = {
  maxSandboxes: Limit('sandboxes alive at once (creating, running or paused); replaces the server default'),
  maxVcpus: Limit('vCPUs of the creating and running sandboxes together'),
  maxMemoryMiB: Limit('memory (MiB) of the creating and running sandboxes together'),
  maxDiskMiB: Limit('disk (MiB) of the live sandboxes (paused ones too) together'),
  createsPerMinute: Limit('sandboxes created in any 60 s'),
  requestsPerSecond: Limit('API requests a second, per API key'),
  maxLifetimeS: Limit('the longest timeout (s) a create, setTimeout or connect may ask for', MAX_TIMEOUT_S),
};
const Quota = Type.Object(QuotaFields);
/** Quota fields to set; those left out keep their value, null clears one. */
const QuotaChange = Type.Partial(Type.Object(QuotaFields), {
  // Not `false`: the validator would drop an unknown field unsaid, where it is a 400 (api/errors.ts).
  additionalProperties: Type.Never(),
});

const TeamInfo = Type.Object({
  id: Type.String(),
  name: Type.String(),
  operator: Type.Boolean(),
  createdAt: Type.String(),
  quota: Quota,
});
const tags = ['teams (aiva)'];

/** aiva's teams and their quotas (E2B has no equivalent in its public API): the operator team manages them. */
export function registerTeamRoutes(base: FastifyInstance, teams: TeamService): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/v1/teams',
    {
      schema: {
        tags,
        summary: 'Teams and their quotas: every team for the operator team, the caller’s own for others',
        response: { 200: Type.Array(TeamInfo), 401: ErrorBody },
      },
    },
    async (request) => teams.listTeams(callerOf(request)),
  );
  app.post(
    '/v1/teams',
    {
      schema: {
        tags,
        summary:
          'Create a team, with quotas, and its first API key (operator team only); the key is in this response only',
        body: Type.Object({
          name: Text({ minLength: 1, maxLength: 100 }),
          quota: Type.Optional(QuotaChange),
        }),
        response: {
          201: Type.Object({ teamId: Type.String(), key: Type.String(), team: TeamInfo }),
          400: ErrorBody,
          401: ErrorBody,
          403: ErrorBody,
        },
      },
    },
    async (request, reply) =>
      reply.code(201).send(await teams.createTeam(callerOf(request), request.body.name, request.body.quota)),
  );
  app.patch(
    '/v1/teams/:teamID',
    {
      preValidation: operatorOnly(teams, 'change teams and their quotas'),
      schema: {
        tags,
        summary: 'Rename a team or set its quotas (operator team only); null clears a quota',
        params: Type.Object({ teamID: Type.String({ pattern: '^[a-z0-9_]{1,64}$' }) }),
        body: Type.Object({
          name: Type.Optional(Text({ minLength: 1, maxLength: 100 })),
          quota: Type.Optional(QuotaChange),
        }),
        response: { 200: TeamInfo, 400: ErrorBody, 401: ErrorBody, 403: ErrorBody, 404: ErrorBody },
      },
    },
    async (request) => teams.updateTeam(callerOf(request), request.params.teamID, request.body),
  );
}
