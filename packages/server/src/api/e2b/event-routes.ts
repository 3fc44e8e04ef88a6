import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { Type } from 'typebox';
import { NotFoundError } from '../../services/errors.js';
import type { SandboxEvents } from '../../services/sandbox-events.js';
import type { WebhookService } from '../../services/webhook-service.js';
import { callerOf } from '../authenticate.js';
import { ErrorResponses, SandboxParams, Text } from './schemas.js';

// E2B's lifecycle events and webhooks (`/events/sandboxes`, `/events/webhooks`), and aiva's
// delivery log of a webhook.

/** An event type's shape (`sandbox.lifecycle.killed`): anything else is a 400, never a query. */
const EVENT_TYPE = '^[a-z][a-z._]{0,63}$';

const SandboxEvent = Type.Object({
  version: Type.String(),
  id: Type.String(),
  type: Type.String(),
  eventData: Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]),
  sandboxBuildId: Type.String(),
  sandboxExecutionId: Type.String(),
  sandboxId: Type.String(),
  sandboxTeamId: Type.String(),
  sandboxTemplateId: Type.String(),
  timestamp: Type.String(),
});
const EventQuery = Type.Object({
  offset: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  orderAsc: Type.Optional(Type.Boolean()),
  types: Type.Optional(
    Type.Union([
      Type.Array(Type.String({ pattern: EVENT_TYPE }), { maxItems: 10 }),
      Type.String({ pattern: EVENT_TYPE }),
    ]),
  ),
});
const Webhook = Type.Object({
  id: Type.String(),
  teamID: Type.String(),
  name: Type.String(),
  url: Type.String(),
  enabled: Type.Boolean(),
  events: Type.Array(Type.String()),
  createdAt: Type.String(),
});
const WebhookFields = {
  name: Type.Optional(Text({ minLength: 1, maxLength: 200 })),
  url: Type.Optional(Text({ minLength: 1, maxLength: 2000 })),
  enabled: Type.Optional(Type.Boolean()),
  events: Type.Optional(Type.Array(Text({ maxLength: 100 }), { maxItems: 20 })),
  signatureSecret: Type.Optional(Text({ minLength: 1, maxLength: 500 })),
};
/** A webhook's id (`wh_` and hex; any other is a 400, never a query). */
const WebhookParams = Type.Object({ webhookID: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) });
const Delivery = Type.Object({
  id: Type.String(),
  eventID: Type.String(),
  state: Type.String(),
  attempts: Type.Integer(),
  log: Type.Array(
    Type.Object({
      at: Type.String(),
      ms: Type.Number(),
      status: Type.Optional(Type.Integer()),
      error: Type.Optional(Type.String()),
    }),
  ),
  createdAt: Type.String(),
  deliveredAt: Type.Union([Type.String(), Type.Null()]),
});
const tags = ['events'];

const typesOf = (t: string | string[] | undefined) =>
  t === undefined ? undefined : Array.isArray(t) ? t : [t];

export function registerEventRoutes(
  base: FastifyInstance,
  events: SandboxEvents,
  hooks: WebhookService,
): void {
  const app = base.withTypeProvider<TypeBoxTypeProvider>();
  app.get(
    '/events/sandboxes',
    {
      schema: {
        tags,
        summary: 'The team’s sandbox lifecycle events (kept 7 days), newest first unless orderAsc',
        querystring: EventQuery,
        response: { 200: Type.Array(SandboxEvent), ...ErrorResponses },
      },
    },
    async (request) =>
      events.list(callerOf(request), { ...request.query, types: typesOf(request.query.types) }),
  );
  app.get(
    '/events/sandboxes/:sandboxID',
    {
      schema: {
        tags,
        summary: 'One sandbox’s lifecycle events',
        params: SandboxParams,
        querystring: EventQuery,
        response: { 200: Type.Array(SandboxEvent), ...ErrorResponses },
      },
    },
    async (request) =>
      events.list(
        callerOf(request),
        { ...request.query, types: typesOf(request.query.types) },
        request.params.sandboxID,
      ),
  );
  app.post(
    '/events/webhooks',
    {
      schema: {
        tags,
        summary: 'Register a webhook for the team’s sandbox lifecycle events',
        body: Type.Object(WebhookFields),
        response: { 201: Webhook, ...ErrorResponses },
      },
    },
    async (request, reply) => reply.code(201).send(await hooks.create(callerOf(request), request.body)),
  );
  app.get(
    '/events/webhooks',
    {
      schema: {
        tags,
        summary: 'The team’s webhooks',
        response: { 200: Type.Array(Webhook), ...ErrorResponses },
      },
    },
    async (request) => hooks.list(callerOf(request)),
  );
  app.get(
    '/events/webhooks/:webhookID',
    {
      schema: {
        tags,
        summary: 'A webhook',
        params: WebhookParams,
        response: { 200: Webhook, ...ErrorResponses },
      },
    },
    async (request) => hooks.get(callerOf(request), request.params.webhookID),
  );
  app.patch(
    '/events/webhooks/:webhookID',
    {
      schema: {
        tags,
        summary: 'Change a webhook: the fields given replace its own',
        params: WebhookParams,
        body: Type.Object(WebhookFields),
        response: { 200: Webhook, ...ErrorResponses },
      },
    },
    async (request) => hooks.update(callerOf(request), request.params.webhookID, request.body),
  );
  app.delete(
    '/events/webhooks/:webhookID',
    {
      schema: {
        tags,
        summary: 'Remove a webhook',
        params: WebhookParams,
        response: { 200: Type.Null(), ...ErrorResponses },
      },
    },
    async (request, reply) => {
      if (!(await hooks.remove(callerOf(request), request.params.webhookID)))
        throw new NotFoundError(`webhook ${request.params.webhookID} not found`);
      return reply.code(200).send(null);
    },
  );
  app.get(
    '/events/webhooks/:webhookID/deliveries',
    {
      schema: {
        tags,
        summary: 'aiva: the webhook’s latest deliveries, each with its attempts (time, status or error)',
        params: WebhookParams,
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200 })) }),
        response: { 200: Type.Array(Delivery), ...ErrorResponses },
      },
    },
    async (request) => hooks.deliveries(callerOf(request), request.params.webhookID, request.query.limit),
  );
}
