import swagger from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import type { Database } from '../db/database.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import type { NodeRegistry } from '../nodes/node-registry.js';
import { AuditLog } from '../services/audit-log.js';
import { ConsoleSessions } from '../services/console-sessions.js';
import type { EnvironmentService } from '../services/environment-service.js';
import { NodeTokenService } from '../services/node-token-service.js';
import type { SandboxEvents } from '../services/sandbox-events.js';
import type { SandboxService } from '../services/sandbox-service.js';
import { SandboxStatsService } from '../services/sandbox-stats.js';
import type { SnapshotService } from '../services/snapshot-service.js';
import { TeamMetrics } from '../services/team-metrics.js';
import type { TeamQuotas } from '../services/team-quotas.js';
import type { TeamService } from '../services/team-service.js';
import type { TemplateBuilds } from '../services/template-builds.js';
import type { TemplateCatalog } from '../services/template-catalog.js';
import { UsageReports } from '../services/usage-report.js';
import type { VolumeService } from '../services/volume-service.js';
import type { WebhookService } from '../services/webhook-service.js';
import { recordMutatingCalls } from './audit-hook.js';
import { requireApiKey } from './authenticate.js';
import { registerEventRoutes } from './e2b/event-routes.js';
import { registerMetricsRoutes } from './e2b/metrics-routes.js';
import { registerSandboxRoutes } from './e2b/sandbox-routes.js';
import { registerSnapshotRoutes } from './e2b/snapshot-routes.js';
import { registerTemplateRoutes } from './e2b/template-routes.js';
import { registerUnsupportedRoutes } from './e2b/unsupported-routes.js';
import { registerVolumeRoutes } from './e2b/volume-routes.js';
import { registerAuditRoutes } from './native/audit-routes.js';
import { registerConsoleSessionRoutes } from './native/console-session-routes.js';
import { registerEnvironmentRoutes } from './native/environment-routes.js';
import { registerKeyRoutes } from './native/key-routes.js';
import { registerMcpRoutes } from './native/mcp-routes.js';
import { registerNodeRoutes } from './native/node-routes.js';
import { registerNodeTokenRoutes } from './native/node-token-routes.js';
import { registerSandboxStatsRoutes } from './native/sandbox-stats-routes.js';
import { registerSandboxStreamRoutes } from './native/sandbox-stream-routes.js';
import { registerTeamRoutes } from './native/team-routes.js';
import { registerUsageRoutes } from './native/usage-routes.js';

/** What the authenticated API is made of: the server's services. */
export interface ApiServices {
  db: Database;
  metrics: ServerMetrics;
  teams: TeamService;
  quotas: TeamQuotas;
  sandboxes: SandboxService;
  snapshots: SnapshotService;
  volumes: VolumeService;
  environments: EnvironmentService;
  sandboxEvents: SandboxEvents;
  webhooks: WebhookService;
  templateCatalog: TemplateCatalog;
  templateBuilds: TemplateBuilds;
  /** The cluster's nodes (`aiva server`); absent on `aiva up`, which has its own node. */
  registry: NodeRegistry | undefined;
  prices: ConstructorParameters<typeof UsageReports>[1];
  mcp: Parameters<typeof registerMcpRoutes>[1];
}

/**
 * The API behind an API key (or a console session): authentication, the audit of every
 * mutating call, then E2B's routes and aiva's own. Registered in a plugin of its own, so
 * the hooks apply to these routes only (not to /health, the proxy's or the node's).
 */
export function registerApiRoutes(api: FastifyInstance, s: ApiServices): void {
  const consoleSessions = new ConsoleSessions(s.db, s.teams);
  requireApiKey(api, s.teams, s.quotas, consoleSessions);
  const audit = new AuditLog(s.db);
  recordMutatingCalls(api, audit);
  registerConsoleSessionRoutes(api, consoleSessions, s.quotas, s.teams, { nodes: Boolean(s.registry) });
  registerSandboxRoutes(api, s.sandboxes, s.snapshots);
  registerSandboxStreamRoutes(api, s.sandboxes, s.teams);
  const registry = s.registry;
  registerSandboxStatsRoutes(
    api,
    s.teams,
    new SandboxStatsService(
      s.db,
      () => s.sandboxes.liveSandboxes(),
      s.metrics.createLog,
      registry ? () => registry.list() : undefined,
    ),
  );
  registerMetricsRoutes(api, s.sandboxes, new TeamMetrics(s.db));
  registerSnapshotRoutes(api, s.snapshots);
  registerVolumeRoutes(api, s.volumes);
  registerEnvironmentRoutes(api, s.environments);
  registerEventRoutes(api, s.sandboxEvents, s.webhooks);
  registerTemplateRoutes(api, s.templateCatalog, s.templateBuilds, s.snapshots);
  registerKeyRoutes(api, s.teams);
  registerUsageRoutes(api, s.teams, new UsageReports(s.db, s.prices));
  registerAuditRoutes(api, s.teams, audit);
  registerTeamRoutes(api, s.teams);
  registerNodeTokenRoutes(api, s.teams, new NodeTokenService(s.db));
  if (registry) registerNodeRoutes(api, s.teams, registry);
  registerMcpRoutes(api, s.mcp);
  registerUnsupportedRoutes(api);
}

/**
 * What the server answers without a key: `/health`, Prometheus' `/metrics` (with every
 * request's duration by route and status), and the OpenAPI document of every route.
 */
export async function registerServerRoutes(
  app: FastifyInstance,
  o: { version: string; metrics: ServerMetrics },
): Promise<void> {
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'aiva',
        version: o.version,
        description: 'E2B-compatible sandbox API, plus aiva routes',
      },
      components: { securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' } } },
      security: [{ apiKey: [] }],
    },
  });
  app.addHook('onResponse', async (request, reply) => {
    o.metrics.httpSeconds.observe(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: String(reply.statusCode),
      },
      reply.elapsedTime / 1000,
    );
  });
  app.get('/health', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/metrics', { schema: { hide: true } }, async (_request, reply) =>
    reply.type(o.metrics.registry.contentType).send(await o.metrics.registry.metrics()),
  );
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
