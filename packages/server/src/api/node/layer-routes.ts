import { LAYER_DIGEST_HEADER, LAYER_HASH_PATTERN, NODE_ROUTES } from '@aiva/protocol/node';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { LAYER_UPLOAD_LIMIT, type LayerStore } from '../../nodes/layer-store.js';
import { NotFoundError } from '../../services/errors.js';
import { ErrorBody } from '../e2b/schemas.js';
import { nodeOf, tags } from './node-agent-routes.js';

// The server's store of layers, for node agents (node credential, in the scope of the
// node routes): a node PUTs a layer it holds (`artefact.push`) and GETs one it lacks
// (`artefact.fetch`). A layer travels as a tar, its sha256 in LAYER_DIGEST_HEADER.

const params = Type.Object({ hash: Type.String({ pattern: LAYER_HASH_PATTERN }) });
const TAR = 'application/x-tar';

export function registerLayerRoutes(base: FastifyInstance, store: LayerStore): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  // A layer's body is streamed to disk, never parsed (the scope's gzip hook has unzipped it).
  for (const type of [TAR, 'application/octet-stream'])
    app.addContentTypeParser(type, (_request, payload, done) => done(null, payload));
  app.put(
    `${NODE_ROUTES.layers}/:hash`,
    {
      bodyLimit: LAYER_UPLOAD_LIMIT,
      schema: {
        tags,
        summary:
          "A layer of the node's store, into the server's: a tar whose sha256 is in the aiva-digest header",
        params,
        headers: Type.Object({ [LAYER_DIGEST_HEADER]: Type.String({ pattern: '^sha256:[a-f0-9]{64}$' }) }),
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
        throw Object.assign(new Error(`a layer is sent as ${TAR}`), { statusCode: 415 });
      const digest = request.headers[LAYER_DIGEST_HEADER] as string;
      const stored = await store.put(request.params.hash, digest, body as never, node.id);
      request.log.info({ node: node.id, layer: stored.hash, bytes: stored.bytes }, 'layer stored');
      return { hash: stored.hash, digest: stored.digest, bytes: stored.bytes };
    },
  );
  app.get(
    `${NODE_ROUTES.layers}/:hash`,
    {
      schema: {
        tags,
        summary: "A layer of the server's store, as a tar; its sha256 in the aiva-digest header",
        params,
      },
    },
    async (request, reply) => {
      nodeOf(request);
      const layer = await store.find(request.params.hash);
      if (!layer) throw new NotFoundError(`the server's store has no layer ${request.params.hash}`);
      return reply
        .type(TAR)
        .header('content-length', layer.bytes)
        .header(LAYER_DIGEST_HEADER, layer.digest)
        .send(store.open(layer.hash));
    },
  );
}
