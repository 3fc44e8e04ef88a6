import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import {
  NODE_PROTOCOL_HEADER,
  NODE_ROUTES,
  NodeJoinRequestSchema,
  NodeJoinResponseSchema,
  NodeProgressRequestSchema,
  NodeResultsRequestSchema,
  NodeResultsResponseSchema,
  NodeSnapshotSchema,
} from '@aiva/protocol/node';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { ArtefactKind, ArtefactStore } from '../../nodes/artefact-store.js';
import type { NodeCommandQueue } from '../../nodes/command-queue.js';
import type { NodeRegistry, NodeRow } from '../../nodes/node-registry.js';
import type { BuildFiles } from '../../services/build-files.js';
import { ForbiddenError, NotFoundError } from '../../services/errors.js';
import { ErrorBody } from '../e2b/schemas.js';
import { registerArtefactRoutes } from './artefact-routes.js';

declare module 'fastify' {
  interface FastifyRequest {
    node?: NodeRow;
  }
}

/** The largest body a node may send, once unzipped (a snapshot of many sandboxes). */
const NODE_BODY_LIMIT = 16 * 1024 * 1024;
export const tags = ['node agents (aiva)'];

export function nodeOf(request: FastifyRequest): NodeRow {
  if (!request.node) throw new Error('the node was not authenticated');
  return request.node;
}

/**
 * The routes node agents call (`aiva node join`): join with a token, then — with the
 * node's credential — push snapshots, long-poll commands, post outcomes and progress.
 * Bodies may be gzip-encoded.
 */
export async function registerNodeAgentRoutes(
  base: FastifyInstance,
  registry: NodeRegistry,
  queue: NodeCommandQueue,
  /** The uploaded build files (a node's build reads them). */
  files: BuildFiles,
  /** The server's stores of layers and checkpoints, which nodes fill and fetch from. */
  artefacts?: Record<ArtefactKind, ArtefactStore>,
): Promise<void> {
  await base.register(async (scoped) => {
    const app = scoped.withTypeProvider<TypeBoxTypeProvider>();
    // A gzip body is unzipped before it is parsed; the limit counts what it unzips to.
    app.addHook('preParsing', async (request, _reply, payload) => {
      if (request.headers['content-encoding'] !== 'gzip') return payload;
      delete request.headers['content-encoding'];
      // Fastify matches Content-Length against what came over the wire, not what it unzips to.
      const unzipped = Object.assign(createGunzip(), { receivedEncodedLength: 0 });
      payload.on('data', (chunk: Buffer) => {
        unzipped.receivedEncodedLength += chunk.length;
      });
      payload.on('error', (e) => unzipped.destroy(e));
      return payload.pipe(unzipped);
    });
    app.addHook('onRequest', async (request) => {
      if (request.routeOptions.url === NODE_ROUTES.join) return;
      const node = await registry.authenticate(request.headers.authorization, request.ip);
      registry.checkVersion(request.headers[NODE_PROTOCOL_HEADER] as string | undefined);
      request.node = node;
    });

    app.post(
      NODE_ROUTES.join,
      {
        bodyLimit: 64 * 1024,
        schema: {
          tags,
          summary: 'Join the cluster with a join token; the node credential is in this response only',
          body: NodeJoinRequestSchema,
          response: {
            200: NodeJoinResponseSchema,
            400: ErrorBody,
            401: ErrorBody,
            409: ErrorBody,
            426: ErrorBody,
          },
        },
      },
      async (request) => registry.join(request.body, request.ip),
    );
    app.post(
      NODE_ROUTES.snapshot,
      {
        bodyLimit: NODE_BODY_LIMIT,
        schema: {
          tags,
          summary: "The node's state, whole",
          body: NodeSnapshotSchema,
          response: {
            200: Type.Object({ ok: Type.Boolean() }),
            401: ErrorBody,
            403: ErrorBody,
            426: ErrorBody,
          },
        },
      },
      async (request) => {
        await registry.snapshot(nodeOf(request), request.body);
        return { ok: true };
      },
    );
    app.get(
      NODE_ROUTES.commands,
      {
        schema: {
          tags,
          summary: 'The commands for this node, waiting up to `wait` seconds for one',
          querystring: Type.Object({ wait: Type.Optional(Type.Integer({ minimum: 0, maximum: 60 })) }),
          response: { 200: Type.Object({ commands: Type.Array(Type.Unknown()) }), 401: ErrorBody },
        },
      },
      async (request) => {
        const gone = new AbortController();
        request.raw.once('close', () => gone.abort());
        const commands = await queue.take(nodeOf(request).id, (request.query.wait ?? 0) * 1000, gone.signal);
        return { commands };
      },
    );
    app.post(
      NODE_ROUTES.results,
      {
        bodyLimit: NODE_BODY_LIMIT,
        schema: {
          tags,
          summary: "Outcomes of the node's commands, each applied once",
          body: NodeResultsRequestSchema,
          response: { 200: NodeResultsResponseSchema, 401: ErrorBody },
        },
      },
      async (request) => ({ verdicts: await queue.complete(nodeOf(request).id, request.body.outcomes) }),
    );
    app.get(
      `${NODE_ROUTES.files}/:team/:hash`,
      {
        schema: {
          tags,
          summary: "An uploaded build file one of the node's running builds names",
          params: Type.Object({
            team: Type.String({ pattern: '^[A-Za-z0-9_-]{1,100}$' }),
            hash: Type.String({ pattern: '^[a-f0-9]{64}$' }),
          }),
        },
      },
      async (request, reply) => {
        const { team, hash } = request.params;
        if (!(await queue.buildNeeds(nodeOf(request).id, team, hash)))
          throw new ForbiddenError('no running build of this node reads that file');
        const file = await files.local(team, hash);
        const size = file
          ? await stat(file).then(
              (s) => s.size,
              () => undefined,
            )
          : undefined;
        if (!file || size === undefined) throw new NotFoundError(`file ${hash} was not uploaded`);
        return reply.type('application/gzip').header('content-length', size).send(createReadStream(file));
      },
    );
    if (artefacts) registerArtefactRoutes(app, artefacts);
    app.post(
      NODE_ROUTES.progress,
      {
        bodyLimit: NODE_BODY_LIMIT,
        schema: {
          tags,
          summary: 'Log lines of a running command',
          body: NodeProgressRequestSchema,
          response: { 200: Type.Object({ ok: Type.Boolean() }), 401: ErrorBody },
        },
      },
      async (request) => {
        return { ok: await queue.progress(nodeOf(request).id, request.body.commandId, request.body.lines) };
      },
    );
  });
}
