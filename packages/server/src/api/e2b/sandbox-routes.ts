import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { NotFoundError } from '../../services/errors.js';
import type { SandboxService } from '../../services/sandbox-service.js';
import type { SnapshotService } from '../../services/snapshot-service.js';
import { callerOf } from '../authenticate.js';
import {
  ConnectBody,
  ErrorResponses,
  ListedSandbox,
  ListQuery,
  LogsQuery,
  MetricsQuery,
  NetworkUpdateBody,
  NewSandbox,
  PauseBody,
  Sandbox,
  SandboxDetail,
  SandboxLogEntry,
  SandboxMetric,
  SandboxParams,
  Text,
  TimeoutBody,
} from './schemas.js';

const tags = ['sandboxes'];

/** E2B's sandbox routes (v1 and v2, as the e2b SDK 2.45–2.51 calls them). */
export function registerSandboxRoutes(
  base: FastifyInstance,
  sandboxes: SandboxService,
  snapshots: SnapshotService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  for (const [path, defaultTimeout] of [
    ['/v2/sandboxes', 300],
    ['/sandboxes', 15],
  ] as const) {
    app.post(
      path,
      {
        schema: {
          tags,
          summary: 'Create a sandbox from a template, or from a snapshot (templateID: the snapshotID)',
          body: NewSandbox,
          response: { 201: Sandbox, ...ErrorResponses },
        },
      },
      async (request, reply) => {
        const caller = callerOf(request);
        const snapshot = await snapshots.source(caller, request.body.templateID);
        return reply
          .code(201)
          .send(await sandboxes.create(caller, request.body, defaultTimeout, { snapshot }));
      },
    );
  }

  app.get(
    '/v2/sandboxes',
    {
      schema: {
        tags,
        summary:
          'List sandboxes (X-Next-Token when there is a next page; X-Total-Running: running ones matching, when asked for)',
        querystring: ListQuery,
        response: { 200: Type.Array(ListedSandbox), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const page = await sandboxes.list(callerOf(request), request.query);
      if (page.nextToken) void reply.header('x-next-token', page.nextToken);
      if (page.totalRunning !== undefined) void reply.header('x-total-running', String(page.totalRunning));
      return page.items;
    },
  );

  app.get(
    '/sandboxes',
    {
      schema: {
        tags,
        summary: 'List running sandboxes (deprecated in E2B: use /v2/sandboxes)',
        querystring: Type.Object({ metadata: Type.Optional(Text({ maxLength: 8192 })) }),
        response: { 200: Type.Array(ListedSandbox), ...ErrorResponses },
      },
    },
    async (request) => {
      const items = [];
      let nextToken: string | undefined;
      do {
        const page = await sandboxes.list(callerOf(request), {
          metadata: request.query.metadata,
          state: 'running',
          nextToken,
        });
        items.push(...page.items);
        nextToken = page.nextToken;
      } while (nextToken);
      return items;
    },
  );

  app.get(
    '/sandboxes/:sandboxID',
    {
      schema: {
        tags,
        summary: 'A sandbox',
        params: SandboxParams,
        response: { 200: SandboxDetail, ...ErrorResponses },
      },
    },
    async (request) => sandboxes.get(callerOf(request), request.params.sandboxID),
  );

  app.delete(
    '/sandboxes/:sandboxID',
    {
      schema: {
        tags,
        summary: 'Kill a sandbox',
        params: SandboxParams,
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const id = request.params.sandboxID;
      if (!(await sandboxes.kill(callerOf(request), id))) throw new NotFoundError(`sandbox ${id} not found`);
      return reply.code(204).send(null);
    },
  );

  app.post(
    '/sandboxes/:sandboxID/timeout',
    {
      schema: {
        tags,
        summary: 'End the sandbox `timeout` seconds from now (earlier or later than before)',
        params: SandboxParams,
        body: TimeoutBody,
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await sandboxes.setTimeout(callerOf(request), request.params.sandboxID, request.body.timeout);
      return reply.code(204).send(null);
    },
  );

  app.put(
    '/sandboxes/:sandboxID/network',
    {
      schema: {
        tags,
        summary:
          'Replace the sandbox’s egress policy, live (allowOut, denyOut: CIDRs, addresses, domain names; allow_internet_access)',
        params: SandboxParams,
        body: NetworkUpdateBody,
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await sandboxes.updateNetwork(callerOf(request), request.params.sandboxID, request.body);
      return reply.code(204).send(null);
    },
  );

  for (const path of ['/v2/sandboxes/:sandboxID/connect', '/sandboxes/:sandboxID/connect']) {
    app.post(
      path,
      {
        schema: {
          tags,
          summary:
            'Connect to a sandbox: 200 if it runs (its end time only moves later), 201 if it was resumed',
          params: SandboxParams,
          body: ConnectBody,
          response: { 200: Sandbox, 201: Sandbox, ...ErrorResponses },
        },
      },
      async (request, reply) => {
        const r = await sandboxes.connect(
          callerOf(request),
          request.params.sandboxID,
          request.body.timeout,
          request.body.memory,
        );
        return reply.code(r.resumed ? 201 : 200).send(r.sandbox);
      },
    );
  }

  app.post(
    '/sandboxes/:sandboxID/pause',
    {
      schema: {
        tags,
        summary: 'Pause a sandbox (409 if it already is)',
        params: SandboxParams,
        body: Type.Optional(PauseBody),
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await sandboxes.pause(callerOf(request), request.params.sandboxID, request.body?.memory);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/sandboxes/:sandboxID/metrics',
    {
      schema: {
        tags,
        summary:
          'CPU, memory and disk samples of a sandbox (every 5 s), between start and end (unix seconds)',
        params: SandboxParams,
        querystring: MetricsQuery,
        response: { 200: Type.Array(SandboxMetric), ...ErrorResponses },
      },
    },
    async (request) =>
      sandboxes.metrics(callerOf(request), request.params.sandboxID, request.query.start, request.query.end),
  );

  app.get(
    '/v2/sandboxes/:sandboxID/logs',
    {
      schema: {
        tags,
        summary: "A sandbox's logs: its console (init, envd, kernel)",
        params: SandboxParams,
        querystring: LogsQuery,
        response: { 200: Type.Object({ logs: Type.Array(SandboxLogEntry) }), ...ErrorResponses },
      },
    },
    async (request) => ({
      logs: await sandboxes.logs(callerOf(request), request.params.sandboxID, request.query),
    }),
  );
}
