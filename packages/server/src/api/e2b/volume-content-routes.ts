import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import { UnauthorizedError } from '../../services/errors.js';
import type { VolumeRow, VolumeService } from '../../services/volume-service.js';
import { ErrorResponses as E2bErrors, ErrorBody } from './schemas.js';
import { VolumeParams } from './volume-routes.js';

const tags = ['volume content'];
/** E2B's errors, and 507: the volume is full (its size bounds what is written into it). */
const ErrorResponses = { ...E2bErrors, 507: ErrorBody };

const Entry = Type.Object({
  name: Type.String(),
  path: Type.String(),
  type: Type.Union([
    Type.Literal('file'),
    Type.Literal('directory'),
    Type.Literal('symlink'),
    Type.Literal('unknown'),
  ]),
  size: Type.Number(),
  mode: Type.Integer(),
  uid: Type.Integer(),
  gid: Type.Integer(),
  atime: Type.String(),
  mtime: Type.String(),
  ctime: Type.String(),
  target: Type.Optional(Type.String()),
});

const id = Type.Integer({ minimum: 0, maximum: 2 ** 32 - 2 });
const PathQuery = Type.Object({ path: Type.String({ maxLength: 4096 }) });
const WriteQuery = Type.Object({
  path: Type.String({ maxLength: 4096 }),
  uid: Type.Optional(id),
  gid: Type.Optional(id),
  mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 0o7777 })),
  force: Type.Optional(Type.Boolean()),
});
const Metadata = Type.Object({
  uid: Type.Optional(id),
  gid: Type.Optional(id),
  mode: Type.Optional(Type.Integer({ minimum: 0, maximum: 0o7777 })),
});

/**
 * E2B's volume content API (`/volumecontent/{volumeID}/…`, the SDK's `Volume` instance
 * methods): files of one volume, authorized by the volume's own token (`Authorization:
 * Bearer <token>` from create or get), not by an API key — so these routes are registered
 * outside the API-key plugin, and are not in the audit log. Paths are the volume's own
 * (`/a/b` from its root); symlinks are never followed (`VolumeTree`).
 */
export function registerVolumeContentRoutes(base: FastifyInstance, volumes: VolumeService): void {
  base.register(async (scope) => {
    // A file's bytes are streamed to the volume as they come: no parser reads them.
    scope.addContentTypeParser('application/octet-stream', (_request, _payload, done) => done(null));
    const app = scope.withTypeProvider<TypeBoxTypeProvider>();

    const volumeOf = async (request: {
      params: VolumeParams;
      headers: FastifyRequest['headers'];
    }): Promise<VolumeRow> => {
      const token = /^Bearer (\S+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (!token)
        throw new UnauthorizedError('missing volume token (Authorization: Bearer <the volume’s token>)');
      const v = await volumes.byToken(request.params.volumeID, token);
      if (!v) throw new UnauthorizedError(`invalid token for volume ${request.params.volumeID}`);
      return v;
    };

    app.get(
      '/volumecontent/:volumeID/dir',
      {
        schema: {
          tags,
          summary: 'List a directory of the volume',
          params: VolumeParams,
          querystring: Type.Object({
            path: Type.String({ maxLength: 4096 }),
            depth: Type.Optional(Type.Integer({ minimum: 1, maximum: 32 })),
          }),
          response: { 200: Type.Array(Entry), ...ErrorResponses },
        },
      },
      async (request) =>
        (await volumes.mountedTree(await volumeOf(request))).list(
          request.query.path,
          request.query.depth ?? 1,
        ),
    );

    app.post(
      '/volumecontent/:volumeID/dir',
      {
        schema: {
          tags,
          summary: 'Make a directory (force: its missing parents too)',
          params: VolumeParams,
          querystring: WriteQuery,
          response: { 201: Entry, ...ErrorResponses },
        },
      },
      async (request, reply) => {
        const { path, force, ...owner } = request.query;
        const entry = await (await volumes.mountedTree(await volumeOf(request))).makeDir(path, {
          ...owner,
          parents: force,
        });
        return reply.code(201).send(entry);
      },
    );

    app.get(
      '/volumecontent/:volumeID/path',
      {
        schema: {
          tags,
          summary: 'A file’s or directory’s information',
          params: VolumeParams,
          querystring: PathQuery,
          response: { 200: Entry, ...ErrorResponses },
        },
      },
      async (request) => (await volumes.mountedTree(await volumeOf(request))).info(request.query.path),
    );

    app.patch(
      '/volumecontent/:volumeID/path',
      {
        schema: {
          tags,
          summary: 'Change a file’s or directory’s owner or mode',
          params: VolumeParams,
          querystring: PathQuery,
          body: Metadata,
          response: { 200: Entry, ...ErrorResponses },
        },
      },
      async (request) =>
        (await volumes.mountedTree(await volumeOf(request))).updateMetadata(request.query.path, request.body),
    );

    app.delete(
      '/volumecontent/:volumeID/path',
      {
        schema: {
          tags,
          summary: 'Remove a file, symlink or directory (with what it holds)',
          params: VolumeParams,
          querystring: PathQuery,
          response: { 204: Type.Null(), ...ErrorResponses },
        },
      },
      async (request, reply) => {
        await (await volumes.mountedTree(await volumeOf(request))).remove(request.query.path);
        return reply.code(204).send(null);
      },
    );

    app.get(
      '/volumecontent/:volumeID/file',
      {
        schema: {
          tags,
          summary: 'Read a file (its bytes)',
          params: VolumeParams,
          querystring: PathQuery,
        },
      },
      async (request, reply) => {
        const { stream, size } = await (await volumes.mountedTree(await volumeOf(request))).openFile(
          request.query.path,
        );
        return reply.type('application/octet-stream').header('content-length', size).send(stream);
      },
    );

    app.put(
      '/volumecontent/:volumeID/file',
      {
        schema: {
          tags,
          summary: 'Write a file: the body’s bytes (force: overwrite an existing one)',
          params: VolumeParams,
          querystring: WriteQuery,
          response: { 201: Entry, ...ErrorResponses },
        },
      },
      async (request, reply) => {
        const v = await volumeOf(request);
        const { path, force, ...owner } = request.query;
        // The volume's size bounds it: a write that fills it is a 507 and leaves nothing.
        const entry = await (await volumes.mountedTree(v)).writeFile(path, request.raw, {
          ...owner,
          overwrite: force,
        });
        return reply.code(201).send(entry);
      },
    );
  });
}
