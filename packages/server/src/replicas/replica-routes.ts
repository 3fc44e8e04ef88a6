import { LAYER_DIGEST_HEADER, LAYER_HASH_PATTERN } from '@aiva/protocol/node';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { type LayerStore, replicaLayerPath } from '../nodes/layer-store.js';
import { NotFoundError } from '../services/errors.js';
import { checkReplicaLink } from './replica-links.js';
import type { ServerReplica } from './server-replica.js';

/** What one server replica serves the others from its own disk: the layers nodes pushed to it. */
export function registerReplicaRoutes(
  base: FastifyInstance,
  replica: ServerReplica,
  layers: LayerStore,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    replicaLayerPath(':hash'),
    {
      schema: {
        hide: true,
        params: Type.Object({ hash: Type.String({ pattern: LAYER_HASH_PATTERN }) }),
        querystring: Type.Object({
          expires: Type.Optional(Type.String()),
          signature: Type.Optional(Type.String()),
        }),
      },
    },
    async (request, reply) => {
      const { hash } = request.params;
      checkReplicaLink(await replica.sharedSecret(), replicaLayerPath(hash), request.query);
      const layer = await layers.get(hash);
      if (!layer) throw new NotFoundError(`this replica's store has no layer ${hash}`);
      return reply
        .type('application/x-tar')
        .header('content-length', layer.bytes)
        .header(LAYER_DIGEST_HEADER, layer.digest)
        .send(layers.open(hash));
    },
  );
}
