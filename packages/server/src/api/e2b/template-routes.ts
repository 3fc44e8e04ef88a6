import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import type { SandboxNode } from '../../nodes/sandbox-node.js';
import { NotFoundError } from '../../services/errors.js';
import { ErrorBody, TemplateAlias, Text } from './schemas.js';

/** E2B's template lookups. A template's id and alias are both its recipe's name. */
export function registerTemplateRoutes(base: FastifyInstance, node: SandboxNode): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/templates/aliases/:alias',
    {
      schema: {
        tags: ['templates'],
        summary: 'The template an alias names',
        params: Type.Object({ alias: Text({ minLength: 1, maxLength: 128 }) }),
        response: { 200: TemplateAlias, 401: ErrorBody, 404: ErrorBody },
      },
    },
    async (request) => {
      const { alias } = request.params;
      if (!(await node.templates()).includes(alias))
        throw new NotFoundError(`template alias "${alias}" not found`);
      return { templateID: alias, public: true };
    },
  );
}
