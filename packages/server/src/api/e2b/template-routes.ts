import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { NotFoundError } from '../../services/errors.js';
import type { SnapshotService } from '../../services/snapshot-service.js';
import type { TemplateBuilds } from '../../services/template-builds.js';
import type { BuildRow, TemplateCatalog, TemplateRow } from '../../services/template-catalog.js';
import { callerOf } from '../authenticate.js';
import { ErrorResponses, TemplateAlias, Text } from './schemas.js';
import {
  AssignTagsBody,
  BuildParams,
  BuildStartBody,
  BuildStatusQuery,
  DeleteTagsBody,
  FileParams,
  TemplateBuildRequest,
  TemplateParams,
  TemplateUpdateBody,
} from './template-schemas.js';

const tags = ['templates'];

/** The URL this server is reached at, as the client reached it (for upload links). */
function baseUrlOf(request: FastifyRequest): string {
  return `${request.protocol}://${request.headers.host ?? request.hostname}`;
}

function templateOf(t: TemplateRow, latest?: BuildRow) {
  return {
    templateID: t.id,
    buildID: t.readyBuildId ?? latest?.id ?? '',
    cpuCount: t.cpuCount,
    memoryMB: t.memoryMb,
    diskSizeMB: t.diskSizeMb,
    public: t.public,
    aliases: [t.name],
    names: [t.name],
    createdAt: t.createdAt.toISOString(),
    updatedAt: t.updatedAt.toISOString(),
    createdBy: null,
    lastSpawnedAt: t.lastSpawnedAt?.toISOString() ?? null,
    spawnCount: t.spawnCount,
    buildCount: t.buildCount,
    buildStatus: latest?.status ?? (t.readyBuildId ? 'ready' : 'waiting'),
    envdVersion: '0.2.0',
  };
}

/** aiva's own templates (recipes) as E2B lists them: public, built in. */
function recipeOf(name: string) {
  const epoch = new Date(0).toISOString();
  return {
    templateID: name,
    buildID: name,
    cpuCount: 2,
    memoryMB: 512,
    diskSizeMB: 4096,
    public: true,
    aliases: [name],
    names: [name],
    createdAt: epoch,
    updatedAt: epoch,
    createdBy: null,
    lastSpawnedAt: null,
    spawnCount: 0,
    buildCount: 1,
    buildStatus: 'ready',
    envdVersion: '0.2.0',
  };
}

/**
 * E2B's template API as the e2b SDK 2.51 (`Template.build`, tags, `exists`) and @e2b/cli
 * 2.19 (`template create | list | delete | publish`) call it. A DELETE of
 * `/templates/{id}` removes a snapshot of that name, or else a template.
 */
export function registerTemplateRoutes(
  base: FastifyInstance,
  catalog: TemplateCatalog,
  builds: TemplateBuilds,
  snapshots: SnapshotService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();

  app.post(
    '/v3/templates',
    {
      schema: {
        tags,
        summary: 'Request a build of the team’s template `name` (made if new)',
        body: TemplateBuildRequest,
        response: { 202: Type.Any(), ...ErrorResponses },
      },
    },
    async (request, reply) => reply.code(202).send(await builds.request(callerOf(request), request.body)),
  );

  app.get(
    '/templates/:templateID/files/:hash',
    {
      schema: {
        tags,
        summary: 'Whether a COPY step’s files are uploaded, and where to upload them',
        params: FileParams,
        response: { 201: Type.Any(), ...ErrorResponses },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(
          await builds.uploadLink(
            callerOf(request),
            request.params.templateID,
            request.params.hash,
            baseUrlOf(request),
          ),
        ),
  );

  app.post(
    '/v2/templates/:templateID/builds/:buildID',
    {
      schema: {
        tags,
        summary: 'Start a requested build with its base, steps and start command',
        params: BuildParams,
        body: BuildStartBody,
        response: { 202: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const { templateID, buildID } = request.params;
      const body = request.body;
      await builds.startBuild(callerOf(request), templateID, buildID, {
        ...body,
        steps: (body.steps ?? []).map((st) => ({ ...st, args: st.args ?? [] })),
      });
      return reply.code(202).send(null);
    },
  );

  app.get(
    '/templates/:templateID/builds/:buildID/status',
    {
      schema: {
        tags,
        summary: 'A build’s state and its log from `logsOffset` on',
        params: BuildParams,
        querystring: BuildStatusQuery,
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request) =>
      builds.status(callerOf(request), request.params.templateID, request.params.buildID, request.query),
  );

  app.get(
    '/templates',
    {
      schema: {
        tags,
        summary: 'The team’s templates, the public ones and aiva’s own',
        querystring: Type.Object({ teamID: Type.Optional(Type.String()) }),
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const rows = await catalog.list(caller);
      const latest = await catalog.latestBuilds(rows.map((r) => r.id));
      const out = rows.map((r) => templateOf(r, latest.get(r.id)));
      return [...out, ...(await catalog.recipes()).map(recipeOf)];
    },
  );

  app.get(
    '/templates/:templateID',
    {
      schema: {
        tags,
        summary: 'A template and its builds',
        params: TemplateParams,
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request) => {
      const caller = callerOf(request);
      const ref = request.params.templateID;
      if ((await catalog.recipes()).includes(ref)) return { ...recipeOf(ref), builds: [] };
      const row = await catalog.visible(caller, ref);
      const all = await catalog.builds(row.id);
      return {
        ...templateOf(row, all[0]),
        builds: all.map((b) => ({
          buildID: b.id,
          status: b.status,
          cpuCount: b.cpuCount,
          memoryMB: b.memoryMb,
          createdAt: b.createdAt.toISOString(),
          updatedAt: b.updatedAt.toISOString(),
          ...(b.finishedAt ? { finishedAt: b.finishedAt.toISOString() } : {}),
        })),
      };
    },
  );

  app.delete(
    '/templates/:templateID',
    {
      schema: {
        tags,
        summary: 'Delete a snapshot, or a template (refused while sandboxes run from it)',
        params: Type.Object({ templateID: Text({ minLength: 1, maxLength: 256 }) }),
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      const caller = callerOf(request);
      const ref = request.params.templateID;
      if (!(await snapshots.remove(caller, ref).catch(() => false))) {
        await catalog.delete(caller, ref).catch((e) => {
          if (e instanceof NotFoundError) throw new NotFoundError(`template or snapshot ${ref} not found`);
          throw e;
        });
      }
      return reply.code(204).send(null);
    },
  );

  for (const path of ['/v2/templates/:templateID', '/templates/:templateID'] as const) {
    app.patch(
      path,
      {
        schema: {
          tags,
          summary: 'Make a template public or private',
          params: TemplateParams,
          body: TemplateUpdateBody,
          response: { 200: Type.Any(), ...ErrorResponses },
        },
      },
      async (request) => {
        const row = await catalog.setPublic(
          callerOf(request),
          request.params.templateID,
          request.body.public ?? false,
        );
        return path.startsWith('/v2') ? { names: [row.name] } : null;
      },
    );
  }

  app.post(
    '/templates/tags',
    {
      schema: {
        tags,
        summary: 'Tag the build `target` (name:tag) names',
        body: AssignTagsBody,
        response: { 201: Type.Any(), ...ErrorResponses },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(await catalog.assignTags(callerOf(request), request.body.target, request.body.tags)),
  );

  app.delete(
    '/templates/tags',
    {
      schema: {
        tags,
        summary: 'Remove tags from a template',
        body: DeleteTagsBody,
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await catalog.removeTags(callerOf(request), request.body.name, request.body.tags);
      return reply.code(204).send(null);
    },
  );

  app.get(
    '/templates/:templateID/tags',
    {
      schema: {
        tags,
        summary: 'A template’s tags and the builds they name',
        params: TemplateParams,
        response: { 200: Type.Any(), ...ErrorResponses },
      },
    },
    async (request) => catalog.tags(callerOf(request), request.params.templateID),
  );

  app.get(
    '/templates/aliases/:alias',
    {
      schema: {
        tags,
        summary: 'The template an alias names (403: another team’s private template)',
        params: Type.Object({ alias: Text({ minLength: 1, maxLength: 128 }) }),
        response: { 200: TemplateAlias, ...ErrorResponses, 403: ErrorResponses[401] },
      },
    },
    async (request) => catalog.alias(callerOf(request), request.params.alias),
  );
}

/**
 * The upload links' PUT (no API key: the link's signature is the credential, as E2B's
 * signed storage URLs). Registered outside the authenticated routes.
 */
export function registerTemplateUploadRoute(base: FastifyInstance, builds: TemplateBuilds): void {
  base.register(async (scope) => {
    // The body is the archive itself, streamed to disk: no parser reads it.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, _payload, done) => done(null));
    const app = scope.withTypeProvider<TypeBoxTypeProvider>();
    app.put(
      '/templates/:templateID/files/:hash',
      {
        schema: {
          tags,
          summary: 'Upload a COPY step’s files (a gzip tar) to a link from GET /templates/{id}/files/{hash}',
          params: FileParams,
          querystring: Type.Object({
            team: Type.Optional(Type.String()),
            expires: Type.Optional(Type.String()),
            signature: Type.Optional(Type.String()),
          }),
          response: { 201: Type.Null(), ...ErrorResponses },
        },
      },
      async (request, reply) => {
        const length = Number(request.headers['content-length']);
        await builds.files.receive(
          request.params.hash,
          request.query,
          request.raw,
          Number.isFinite(length) ? length : undefined,
        );
        return reply.code(201).send(null);
      },
    );
  });
}
