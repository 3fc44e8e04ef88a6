import {
  ARTEFACT_DIGEST_HEADER,
  CHECKPOINT_NAME_PATTERN,
  LAYER_HASH_PATTERN,
  NODE_ROUTES,
} from '@aiva/protocol/node';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { ARTEFACT_UPLOAD_LIMIT, type ArtefactKind, type ArtefactStore } from '../../nodes/artefact-store.js';
import { NotFoundError } from '../../services/errors.js';
import { ErrorBody } from '../e2b/schemas.js';
import { nodeOf, tags } from './node-agent-routes.js';

// The server's store of layers and checkpoints, for node agents (node credential, in the
// scope of the node routes): a node PUTs one it holds (`artefact.push`) and GETs one it
// lacks (`artefact.fetch`). Each travels as a tar, its sha256 in ARTEFACT_DIGEST_HEADER.

const TAR = 'application/x-tar';
const NOUN: Record<ArtefactKind, string> = { layers: 'layer', checkpoints: 'checkpoint' };
const PATTERN: Record<ArtefactKind, string> = {
  layers: LAYER_HASH_PATTERN,
  checkpoints: CHECKPOINT_NAME_PATTERN,
};

export function registerArtefactRoutes(
  base: FastifyInstance,
  stores: Record<ArtefactKind, ArtefactStore>,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  // A body is streamed to disk, never parsed (the scope's gzip hook has unzipped it).
  for (const type of [TAR, 'application/octet-stream'])
    app.addContentTypeParser(type, (_request, payload, done) => done(null, payload));
  for (const kind of ['layers', 'checkpoints'] as const) {
    const store = stores[kind];
    const noun = NOUN[kind];
    const params = Type.Object({ hash: Type.String({ pattern: PATTERN[kind] }) });
    app.put(
      `${NODE_ROUTES[kind]}/:hash`,
      {
        bodyLimit: ARTEFACT_UPLOAD_LIMIT,
        schema: {
          tags,
          summary: `A ${noun} of the node's, into the server's store: a tar whose sha256 is in the aiva-digest header`,
          params,
          headers: Type.Object({
            [ARTEFACT_DIGEST_HEADER]: Type.String({ pattern: '^sha256:[a-f0-9]{64}$' }),
          }),
          response: {
            200: Type.Object({ hash: Type.String(), digest: Type.String(), bytes: Type.Integer() }),
            400: ErrorBody,
            401: ErrorBody,
            413: ErrorBody,
          },
        },
      },
      async (request) => {
        const node = nodeOf(request);
        const body = request.body as NodeJS.ReadableStream | undefined;
        if (!body || typeof (body as { pipe?: unknown }).pipe !== 'function')
          throw Object.assign(new Error(`a ${noun} is sent as ${TAR}`), { statusCode: 415 });
        const digest = request.headers[ARTEFACT_DIGEST_HEADER] as string;
        const stored = await store.put(request.params.hash, digest, body as never, node.id);
        request.log.info({ node: node.id, [noun]: stored.hash, bytes: stored.bytes }, `${noun} stored`);
        return { hash: stored.hash, digest: stored.digest, bytes: stored.bytes };
      },
    );
    app.get(
      `${NODE_ROUTES[kind]}/:hash`,
      {
        schema: {
          tags,
          summary: `A ${noun} of the server's store, as a tar; its sha256 in the aiva-digest header`,
          params,
        },
      },
      async (request, reply) => {
        nodeOf(request);
        const stored = await store.find(request.params.hash);
        if (!stored) throw new NotFoundError(`the server's store has no ${noun} ${request.params.hash}`);
        return reply
          .type(TAR)
          .header('content-length', stored.bytes)
          .header(ARTEFACT_DIGEST_HEADER, stored.digest)
          .send(store.open(stored.hash));
      },
    );
  }
}
