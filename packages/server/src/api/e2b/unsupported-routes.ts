import type { FastifyInstance } from 'fastify';

/**
 * E2B routes the SDK calls that aiva does not offer yet: they answer 501 with what is
 * missing, so that the SDK raises its error for that resource with a message that says
 * so (a 404 would read as "this secret does not exist").
 */
const UNSUPPORTED: [prefix: string, what: string][] = [
  ['/secrets', 'secrets are not supported by this aiva server'],
];

export function registerUnsupportedRoutes(app: FastifyInstance): void {
  for (const [prefix, message] of UNSUPPORTED) {
    for (const url of [prefix, `${prefix}/*`]) {
      app.all(url, { schema: { hide: true } }, async (_request, reply) =>
        reply.code(501).send({ code: 501, message }),
      );
    }
  }
}
