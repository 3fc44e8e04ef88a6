import { ARTEFACT_DIGEST_HEADER, CHECKPOINT_NAME_PATTERN, LAYER_HASH_PATTERN } from '@aiva/protocol/node';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { type ArtefactKind, type ArtefactStore, replicaArtefactPath } from '../nodes/artefact-store.js';
import { type BuildFiles, replicaBuildFilePath } from '../services/build-files.js';
import { NotFoundError } from '../services/errors.js';
import { checkReplicaLink } from './replica-links.js';
import type { ServerReplica } from './server-replica.js';

const PATTERN: Record<ArtefactKind, string> = {
  layers: LAYER_HASH_PATTERN,
  checkpoints: CHECKPOINT_NAME_PATTERN,
};

/**
 * What one server replica serves the others from its own disk: the layers and checkpoints
 * nodes pushed to it, and the build files uploaded to it. Each GET needs a link signed with
 * the replicas' shared secret (`replica-links.ts`).
 */
export function registerReplicaRoutes(
  base: FastifyInstance,
  replica: ServerReplica,
  stores: Record<ArtefactKind, ArtefactStore>,
  buildFiles: BuildFiles,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  for (const kind of ['layers', 'checkpoints'] as const)
    app.get(
      replicaArtefactPath(kind, ':hash'),
      {
        schema: {
          hide: true,
          params: Type.Object({ hash: Type.String({ pattern: PATTERN[kind] }) }),
          querystring: Type.Object({
            expires: Type.Optional(Type.String()),
            signature: Type.Optional(Type.String()),
          }),
        },
      },
      async (request, reply) => {
        const { hash } = request.params;
        checkReplicaLink(await replica.sharedSecret(), replicaArtefactPath(kind, hash), request.query);
        const stored = await stores[kind].get(hash);
        if (!stored) throw new NotFoundError(`this replica's store has no ${kind} ${hash}`);
        return reply
          .type('application/x-tar')
          .header('content-length', stored.bytes)
          .header(ARTEFACT_DIGEST_HEADER, stored.digest)
          .send(stores[kind].open(hash));
      },
    );
  app.get(
    replicaBuildFilePath(':team', ':hash'),
    {
      schema: {
        hide: true,
        params: Type.Object({
          team: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }),
          hash: Type.String({ pattern: '^[a-f0-9]{64}$' }),
        }),
        querystring: Type.Object({
          expires: Type.Optional(Type.String()),
          signature: Type.Optional(Type.String()),
        }),
      },
    },
    async (request, reply) => {
      const { team, hash } = request.params;
      checkReplicaLink(await replica.sharedSecret(), replicaBuildFilePath(team, hash), request.query);
      const { size, stream } = await buildFiles.forReplica(team, hash);
      return reply.type('application/gzip').header('content-length', size).send(stream);
    },
  );
}
