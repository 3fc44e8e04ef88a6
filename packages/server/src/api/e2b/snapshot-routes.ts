import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { SnapshotService } from '../../services/snapshot-service.js';
import { callerOf } from '../authenticate.js';
import { errorBody } from '../errors.js';
import {
  ErrorResponses,
  ForkBody,
  SandboxForkResult,
  SandboxParams,
  SnapshotBody,
  SnapshotInfo,
  SnapshotListQuery,
} from './schemas.js';

const tags = ['snapshots'];

/** E2B's fork and snapshot routes (e2b SDK 2.51: `Sandbox.fork`, `createSnapshot`, `listSnapshots`, `deleteSnapshot`). */
export function registerSnapshotRoutes(base: FastifyInstance, snapshots: SnapshotService): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/sandboxes/:sandboxID/fork',
    {
      schema: {
        tags,
        summary:
          'Save the sandbox once (it runs on) and make `count` sandboxes from it; each entry is one fork’s sandbox or error',
        params: SandboxParams,
        body: Type.Optional(ForkBody),
        response: { 201: Type.Array(SandboxForkResult), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const results = await snapshots.fork(callerOf(request), request.params.sandboxID, request.body ?? {});
      return reply.code(201).send(results.map((r) => ('sandbox' in r ? r : { error: errorBody(r.error) })));
    },
  );

  app.post(
    '/sandboxes/:sandboxID/snapshots',
    {
      schema: {
        tags,
        summary:
          'Save the sandbox as a snapshot (it runs on): microVMs with memory and processes, containers their files',
        params: SandboxParams,
        body: Type.Optional(SnapshotBody),
        response: { 201: SnapshotInfo, ...ErrorResponses },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await snapshots.create(callerOf(request), request.params.sandboxID, request.body?.name)),
  );

  app.get(
    '/snapshots',
    {
      schema: {
        tags,
        summary: 'The team’s snapshots, newest first (X-Next-Token when there is a next page)',
        querystring: SnapshotListQuery,
        response: { 200: Type.Array(SnapshotInfo), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const page = await snapshots.list(callerOf(request), request.query);
      if (page.nextToken) void reply.header('x-next-token', page.nextToken);
      return page.items;
    },
  );
}
