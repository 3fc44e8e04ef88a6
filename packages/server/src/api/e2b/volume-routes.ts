import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { type Static, Type } from 'typebox';
import { missingScope } from '../../auth/scopes.js';
import type { Caller } from '../../services/team-service.js';
import type { VolumeRow, VolumeService } from '../../services/volume-service.js';
import { callerOf } from '../authenticate.js';
import { ErrorResponses } from './schemas.js';

const tags = ['volumes'];

export const VolumeParams = Type.Object({ volumeID: Type.String({ minLength: 1, maxLength: 64 }) });
export type VolumeParams = Static<typeof VolumeParams>;

const Volume = Type.Object({ volumeID: Type.String(), name: Type.String() });
const VolumeAndToken = Type.Object({ volumeID: Type.String(), name: Type.String(), token: Type.String() });

/**
 * E2B's volume routes (e2b SDK 2.51: `Volume.create`, `connect`, `getInfo`, `list`,
 * `destroy`). Create and get answer the content API's token (empty for a `read-only`
 * key: the token writes), and no `domain` (E2B's
 * BYOC override): the SDK sends content calls to its `E2B_VOLUME_API_URL`, else to
 * `https://api.<E2B_DOMAIN>` — both this server, as the client reaches it.
 */
export function registerVolumeRoutes(base: FastifyInstance, volumes: VolumeService): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  // The token writes the volume's files: a key that may only read (`read-only`) gets an
  // empty one, with which the content API answers 401.
  const withToken = (v: VolumeRow, caller: Caller) => ({
    volumeID: v.id,
    name: v.name,
    token: missingScope(caller.scopes, 'PUT', 'sandboxes') ? '' : v.token,
  });

  app.get(
    '/volumes',
    {
      schema: {
        tags,
        summary: 'The team’s volumes',
        response: { 200: Type.Array(Volume), ...ErrorResponses },
      },
    },
    async (request) => (await volumes.list(callerOf(request))).map((v) => ({ volumeID: v.id, name: v.name })),
  );

  app.post(
    '/volumes',
    {
      schema: {
        tags,
        summary:
          'Create a volume: an ext4 image of a fixed size on the node’s disk that sandboxes mount by name',
        body: Type.Object({
          name: Type.String({ maxLength: 200 }),
          // aiva's own: E2B's body has only the name (the server's default size then).
          sizeMiB: Type.Optional(
            Type.Integer({
              minimum: 1,
              description: 'aiva: the volume’s size in MiB (default: the server’s)',
            }),
          ),
        }),
        response: { 201: VolumeAndToken, ...ErrorResponses },
      },
    },
    async (request, reply) =>
      reply
        .code(201)
        .send(
          withToken(
            await volumes.create(callerOf(request), request.body.name, request.body.sizeMiB),
            callerOf(request),
          ),
        ),
  );

  app.get(
    '/volumes/:volumeID',
    {
      schema: {
        tags,
        summary: 'A volume, with its content token',
        params: VolumeParams,
        response: { 200: VolumeAndToken, ...ErrorResponses },
      },
    },
    async (request) =>
      withToken(await volumes.get(callerOf(request), request.params.volumeID), callerOf(request)),
  );

  app.delete(
    '/volumes/:volumeID',
    {
      schema: {
        tags,
        summary: 'Destroy a volume and its files (409 while a sandbox that has not ended mounts it)',
        params: VolumeParams,
        response: { 204: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      await volumes.destroy(callerOf(request), request.params.volumeID);
      return reply.code(204).send(null);
    },
  );
}
