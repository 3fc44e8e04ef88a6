import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { type Static, Type } from 'typebox';
import type { EnvironmentService } from '../../services/environment-service.js';
import { parsePorts } from '../../services/environment-settings.js';
import { callerOf } from '../authenticate.js';
import { ErrorResponses } from '../e2b/schemas.js';

const tags = ['environments (aiva)'];
const Closed = { additionalProperties: Type.Never() };

const Environment = Type.Object({
  name: Type.String(),
  state: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('starting')]),
  desiredState: Type.Union([Type.Literal('running'), Type.Literal('stopped')]),
  sandboxID: Type.Union([Type.String(), Type.Null()]),
  volumeID: Type.String(),
  settings: Type.Record(Type.String(), Type.String()),
  createdAt: Type.String(),
});
const NameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) });
type NameParams = Static<typeof NameParams>;
const Cpus = Type.Integer({ minimum: 1, maximum: 64 });
const MemoryMB = Type.Integer({ minimum: 128, maximum: 1024 * 1024, description: 'MiB' });
const DiskMB = Type.Integer({ minimum: 256, maximum: 16 * 1024 * 1024, description: 'MiB' });
const Ports = Type.Array(Type.String({ maxLength: 80, description: 'HOST:GUEST or BIND:HOST:GUEST' }), {
  maxItems: 64,
});

/**
 * Named environments (`aiva init|start|stop|status|deploy|logs|config|rm`): aiva's own
 * routes, in the `sandboxes` scope. What the CLI does with them a script can do too.
 */
export function registerEnvironmentRoutes(base: FastifyInstance, envs: EnvironmentService): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.get(
    '/v1/environments',
    {
      schema: {
        tags,
        summary: 'The team’s environments',
        response: { 200: Type.Array(Environment), ...ErrorResponses },
      },
    },
    async (request) => envs.list(callerOf(request)),
  );

  app.post(
    '/v1/environments',
    {
      schema: {
        tags,
        summary: 'Create an environment (`aiva init`) and its volume; it starts with `start`',
        body: Type.Object(
          {
            name: Type.String({ maxLength: 200 }),
            template: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
            cpus: Type.Optional(Cpus),
            memoryMB: Type.Optional(MemoryMB),
            diskMB: Type.Optional(DiskMB),
          },
          Closed,
        ),
        response: { 201: Environment, ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const b = request.body;
      const made = await envs.init(callerOf(request), {
        name: b.name,
        template: b.template ?? 'base',
        cpus: b.cpus,
        memoryMb: b.memoryMB,
        diskMb: b.diskMB,
      });
      return reply.code(201).send(made);
    },
  );

  app.get(
    '/v1/environments/:name',
    {
      schema: {
        tags,
        summary: 'An environment',
        params: NameParams,
        response: { 200: Environment, ...ErrorResponses },
      },
    },
    async (request) => envs.get(callerOf(request), request.params.name),
  );

  app.post(
    '/v1/environments/:name/start',
    {
      schema: {
        tags,
        summary:
          'Start an environment: its kept sandbox, else a fresh one with its volume; its ports and service',
        params: NameParams,
        body: Type.Optional(
          Type.Object(
            {
              cpus: Type.Optional(Cpus),
              memoryMB: Type.Optional(MemoryMB),
              diskMB: Type.Optional(DiskMB),
              ports: Type.Optional(Ports),
              recreate: Type.Optional(Type.Boolean()),
            },
            Closed,
          ),
        ),
        response: { 200: Environment, ...ErrorResponses },
      },
    },
    async (request) => {
      const b = request.body ?? {};
      return envs.start(callerOf(request), request.params.name, {
        cpus: b.cpus,
        memoryMb: b.memoryMB,
        diskMb: b.diskMB,
        ports: b.ports ? parsePorts(b.ports) : undefined,
        recreate: b.recreate,
      });
    },
  );

  app.post(
    '/v1/environments/:name/stop',
    {
      schema: {
        tags,
        summary: 'Stop an environment: its service, then its sandbox shelved (the disk kept)',
        params: NameParams,
        body: Type.Optional(Type.Object({ force: Type.Optional(Type.Boolean()) }, Closed)),
        response: { 200: Environment, ...ErrorResponses },
      },
    },
    async (request) => envs.stop(callerOf(request), request.params.name, request.body?.force ?? false),
  );

  app.delete(
    '/v1/environments/:name',
    {
      schema: {
        tags,
        summary: 'Remove an environment, its sandbox and its volume (409 while it runs, unless force)',
        params: NameParams,
        querystring: Type.Object({ force: Type.Optional(Type.Boolean()) }),
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await envs.remove(callerOf(request), request.params.name, request.query.force ?? false);
      return reply.code(204).send(null);
    },
  );

  app.patch(
    '/v1/environments/:name/config',
    {
      schema: {
        tags,
        summary: 'Set and unset an environment’s settings (applied at its next start or deploy)',
        params: NameParams,
        body: Type.Object(
          {
            set: Type.Optional(
              Type.Record(Type.String({ maxLength: 140 }), Type.String({ maxLength: 32 * 1024 })),
            ),
            unset: Type.Optional(Type.Array(Type.String({ maxLength: 140 }), { maxItems: 100 })),
          },
          Closed,
        ),
        response: { 200: Environment, ...ErrorResponses },
      },
    },
    async (request) =>
      envs.configure(
        callerOf(request),
        request.params.name,
        request.body.set ?? {},
        request.body.unset ?? [],
      ),
  );

  app.post(
    '/v1/environments/:name/deploy',
    {
      schema: {
        tags,
        summary:
          'Deploy the environment’s service: an archive uploaded to /tmp unpacked to /app and its command supervised, or a template to recreate it from',
        params: NameParams,
        body: Type.Object(
          {
            archive: Type.Optional(Type.String({ maxLength: 200 })),
            cmd: Type.Optional(Type.String({ minLength: 1, maxLength: 8192 })),
            restart: Type.Optional(Type.String({ maxLength: 20 })),
            template: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
            imageCommand: Type.Optional(Type.Boolean()),
          },
          Closed,
        ),
        response: { 200: Environment, ...ErrorResponses },
      },
    },
    async (request) => envs.deploy(callerOf(request), request.params.name, request.body),
  );

  app.get(
    '/v1/environments/:name/logs',
    {
      schema: {
        tags,
        summary: 'The service log (from a byte offset, or its last lines), or the sandbox’s console log',
        params: NameParams,
        querystring: Type.Object({
          offset: Type.Optional(Type.Integer({ minimum: 0 })),
          tail: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
          console: Type.Optional(Type.Boolean()),
        }),
        response: { 200: Type.Object({ text: Type.String(), offset: Type.Integer() }), ...ErrorResponses },
      },
    },
    async (request) => envs.logs(callerOf(request), request.params.name, request.query),
  );
}

export type { NameParams };
