import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { VolumeDiskStore } from '@aiva/node';
import cookie from '@fastify/cookie';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { Logger } from 'pino';
import { Gauge } from 'prom-client';
import { registerApiRoutes, registerServerRoutes } from './api/api-routes.js';
import { consoleDist, registerConsole } from './api/console-static.js';
import { registerTemplateUploadRoute } from './api/e2b/template-routes.js';
import { registerVolumeContentRoutes } from './api/e2b/volume-content-routes.js';
import { registerErrorHandling } from './api/errors.js';
import { registerNodeAgentRoutes } from './api/node/node-agent-routes.js';
import { openDatabase } from './db/database.js';
import { createServerMetrics } from './metrics/server-metrics.js';
import { ArtefactStore } from './nodes/artefact-store.js';
import { ArtefactSupply } from './nodes/artefact-supply.js';
import { NodeCommandQueue } from './nodes/command-queue.js';
import { DirectSessions } from './nodes/direct-sessions.js';
import type { NodeLink } from './nodes/node-link.js';
import { NodeRegistry } from './nodes/node-registry.js';
import { Nodes } from './nodes/nodes.js';
import { type TunnelNode, TunnelSessions } from './nodes/tunnel-sessions.js';
import { routeOf, SandboxProxy } from './proxy/sandbox-proxy.js';
import { signedFileRoute } from './proxy/signed-file-url.js';
import { serveForward } from './replicas/replica-forward.js';
import { registerReplicaRoutes } from './replicas/replica-routes.js';
import { applicationNameOf, newReplicaId, ServerReplica } from './replicas/server-replica.js';
import { BuildFiles } from './services/build-files.js';
import { EnvironmentPorts } from './services/environment-ports.js';
import { EnvironmentService } from './services/environment-service.js';
import type { SandboxLimits } from './services/live-sandboxes.js';
import { NodeTokenService } from './services/node-token-service.js';
import { SandboxEvents } from './services/sandbox-events.js';
import { maskedHost } from './services/sandbox-options.js';
import { SandboxService } from './services/sandbox-service.js';
import { SnapshotService } from './services/snapshot-service.js';
import { TeamQuotas } from './services/team-quotas.js';
import { TeamService } from './services/team-service.js';
import { TemplateBuilds } from './services/template-builds.js';
import { TemplateCatalog } from './services/template-catalog.js';
import type { PriceTable } from './services/usage-prices.js';
import { type VolumeLimits, VolumeService } from './services/volume-service.js';
import { WebhookDispatcher } from './services/webhook-dispatcher.js';
import { WebhookService } from './services/webhook-service.js';

export interface ServerConfig {
  /** The data directory (the embedded database lives in `<home>/db`). */
  home: string;
  host: string;
  port: number;
  /** A PostgreSQL server instead of the embedded database. */
  databaseUrl?: string;
  /** Base domain for host routing (`{port}-{sandboxId}.{domain}`, `api.{domain}`). */
  domain?: string;
  /** Serve HTTPS with this certificate and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  limits: SandboxLimits;
  /** Sandboxes kept ready ahead of creates, per template. */
  warmPool?: Record<string, number>;
  version: string;
  /** Usage metering and its prices (`services/usage-meter.ts`, `usage-prices.ts`). */
  metering?: {
    /** Seconds between usage records: default 60. */
    intervalSeconds?: number;
    /** The price table the usage report's cost comes from; none: everything is free. */
    prices?: PriceTable;
  };
  /** Volumes' per-team quota, count and default size (`services/volume-service.ts`; defaults 10 GiB, 100, 1 GiB). */
  volumes?: VolumeLimits;
  /** The local node's volume images (`aiva up`: `node.sandboxes.volumes`); none: volumes are refused. */
  volumeDisks?: VolumeDiskStore;
  /** Nodes join this server over the network (`aiva server`; `aiva node join`). */
  cluster?: {
    /** A node silent this long is unreachable: creates avoid it. */
    unreachableAfterSeconds: number;
    /** A node silent this long is lost: its sandboxes end. */
    lostAfterSeconds: number;
    heartbeatSeconds?: number;
    commandWaitSeconds?: number;
    /**
     * Where the other replicas reach this one (on PostgreSQL, replicas share the database):
     * default this server's own URL.
     */
    advertiseUrl?: string;
    /** What the replicas sign what they ask of each other with (AIVA_CLUSTER_SECRET); default one kept in the database. */
    secret?: string;
    /** Dial nodes' direct listeners (`aiva node join --direct-address`); false: always their tunnels. */
    direct?: boolean;
  };
}

export interface RunningServer {
  /** Where the API and the sandbox traffic are served, e.g. http://127.0.0.1:3000. */
  url: string;
  /** The first API key, when this start created the first team (shown once). */
  firstApiKey?: string;
  app: FastifyInstance;
  sandboxes: SandboxService;
  teams: TeamService;
  /** Stops serving; with `killSandboxes`, ends every sandbox first. */
  close(options: { killSandboxes: boolean }): Promise<void>;
}

/** How long the server's store keeps a checkpoint a node pushed (its node keeps the original). */
const CHECKPOINT_COPY_MS = 60 * 60 * 1000;

/**
 * Starts the control plane on one port: the E2B-compatible API, aiva's own routes, and
 * the proxy for sandbox traffic (routed by E2B's headers or by host name before the API
 * sees the request).
 */
export async function startServer(
  config: ServerConfig,
  /** `aiva up`'s node, in this process; none for a control plane whose nodes join it. */
  localNode: NodeLink | undefined,
  logger: Logger,
): Promise<RunningServer> {
  // A control plane on PostgreSQL is one replica of as many as share the database.
  const replicaId = config.cluster && config.databaseUrl ? newReplicaId() : undefined;
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    pgliteDir: join(config.home, 'db'),
    applicationName: replicaId && applicationNameOf(replicaId),
  });
  logger.info(`database: ${database.description}`);
  const cleanup: (() => Promise<void>)[] = [() => database.close()];
  try {
    const replica =
      replicaId && database.dedicated
        ? new ServerReplica({
            id: replicaId,
            db: database.db,
            connect: database.dedicated,
            url: config.cluster?.advertiseUrl,
            secret: config.cluster?.secret,
            log: logger.child({ component: 'replicas' }),
          })
        : undefined;
    if (replica) {
      await replica.start();
      cleanup.unshift(() => replica.stop());
      logger.info({ replica: replica.id, leader: replica.leader }, 'server replica started');
    }
    const teams = new TeamService(database.db);
    const first = await teams.ensureFirstTeam();
    const metrics = createServerMetrics();
    // The memory the server has placed on each node (live sandboxes, creating ones counted typical).
    const nodes = new Nodes((nodeId) => {
      let mib = 0;
      for (const s of sandboxes.liveSandboxes()) if (s.nodeId === nodeId) mib += s.memoryMb;
      return mib;
    });
    if (localNode) nodes.add(localNode);
    const nodeCommands = new NodeCommandQueue(database.db, logger.child({ component: 'nodes' }), replica);
    // Sandbox traffic to remote nodes rides their own outbound connections.
    const tunnels: TunnelSessions | undefined = config.cluster
      ? new TunnelSessions({
          authenticate: (credential: string): Promise<TunnelNode | undefined> | undefined =>
            registry?.tunnelNode(credential),
          log: logger.child({ component: 'tunnels' }),
        })
      : undefined;
    const direct =
      config.cluster && config.cluster.direct !== false
        ? new DirectSessions({ log: logger.child({ component: 'direct' }) })
        : undefined;
    const registry: NodeRegistry | undefined = config.cluster
      ? new NodeRegistry(
          database.db,
          new NodeTokenService(database.db),
          nodeCommands,
          nodes,
          tunnels as TunnelSessions,
          logger.child({ component: 'nodes' }),
          {
            aivaVersion: config.version,
            heartbeatSeconds: config.cluster.heartbeatSeconds ?? 5,
            commandWaitSeconds: config.cluster.commandWaitSeconds ?? 25,
            unreachableAfterSeconds: config.cluster.unreachableAfterSeconds,
            lostAfterSeconds: config.cluster.lostAfterSeconds,
          },
          replica,
          direct,
        )
      : undefined;
    // Layers and checkpoints a node lacks come through the server's store, from a node that has them.
    const artefactStores = config.cluster
      ? {
          layers: new ArtefactStore(config.home, 'layers', replica),
          checkpoints: new ArtefactStore(config.home, 'checkpoints', replica),
        }
      : undefined;
    if (artefactStores) {
      await artefactStores.layers.sweepTmp();
      nodes.artefacts = new ArtefactSupply(
        // An unreachable node is not asked: its answer would not come.
        () => nodes.all().filter((n) => nodes.stateOf(n.id) !== 'unreachable'),
        artefactStores,
        logger.child({ component: 'artefacts' }),
      );
      // A checkpoint's copy is kept an hour after it was stored: the creates that want it
      // come soon after (a snapshot restored elsewhere, a fork); its node keeps the original.
      const sweep = setInterval(() => {
        artefactStores.checkpoints
          .removeOlderThan(CHECKPOINT_COPY_MS)
          .catch((e: Error) => logger.warn({ err: e }, 'sweeping checkpoint copies failed'));
      }, 60_000);
      sweep.unref();
      cleanup.unshift(async () => clearInterval(sweep));
    }
    if (registry) {
      // The nodes that joined before: their sandboxes are reconciled with the rows below.
      await registry.start();
      cleanup.unshift(async () => {
        registry.stop();
        await tunnels?.close();
        await direct?.close();
      });
    }
    const templateCatalog = new TemplateCatalog(database.db, nodes);
    const buildFiles = new BuildFiles({
      home: config.home,
      log: logger.child({ component: 'templates' }),
      secret: await replica?.sharedSecret(),
      peers: replica && (() => replica.peers()),
    });
    const templateBuilds = new TemplateBuilds(database.db, nodes, templateCatalog, buildFiles, {
      log: logger.child({ component: 'templates' }),
    });
    await templateBuilds.start();
    cleanup.unshift(() => templateBuilds.stop());
    const quotas = new TeamQuotas(database.db, metrics.quotaRejections, config.limits.maxSandboxesPerTeam);
    const volumes = new VolumeService(database.db, {
      home: config.home,
      localNodeId: localNode?.id,
      disks: config.volumeDisks,
      limits: config.volumes,
      logger: logger.child({ component: 'volumes' }),
    });
    const sandboxes = new SandboxService({
      volumes,
      quotas,
      templates: templateCatalog,
      db: database.db,
      nodes,
      logger: logger.child({ component: 'sandboxes' }),
      metrics,
      limits: config.limits,
      warmPool: config.warmPool,
      domain: config.domain,
      replica,
      meteringIntervalS: config.metering?.intervalSeconds,
    });
    await sandboxes.start();
    cleanup.unshift(() => sandboxes.stop({ killSandboxes: false }));
    const snapshots = new SnapshotService(
      database.db,
      nodes,
      sandboxes,
      logger.child({ component: 'snapshots' }),
    );
    await snapshots.start();
    const environments = new EnvironmentService(
      database.db,
      sandboxes,
      volumes,
      templateCatalog,
      new EnvironmentPorts(logger.child({ component: 'environment-ports' })),
      logger.child({ component: 'environments' }),
    );
    // Sandboxes by team, counted from the live index when scraped.
    new Gauge({
      name: 'aiva_team_sandboxes',
      help: 'Live sandboxes by team and state',
      labelNames: ['team', 'state'],
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const s of sandboxes.liveSandboxes()) this.inc({ team: s.teamId, state: s.state });
      },
    });
    const sandboxEvents = new SandboxEvents(database.db);
    const webhookService = new WebhookService(database.db);
    // Every replica delivers: each claims what it sends in the database.
    const dispatcher = new WebhookDispatcher({
      db: database.db,
      log: logger.child({ component: 'webhooks' }),
      attempts: metrics.webhookAttempts,
    });
    dispatcher.start();
    cleanup.unshift(() => dispatcher.stop());
    const pruneEvents = setInterval(() => {
      sandboxEvents.prune().catch((e: Error) => logger.warn({ err: e }, 'pruning sandbox events failed'));
    }, 3600_000);
    pruneEvents.unref();
    cleanup.unshift(async () => clearInterval(pruneEvents));
    if (registry) {
      registry.onReported = async (nodeId) => {
        await sandboxes.reconcileNode(nodeId);
        await snapshots.reconcile(nodeId);
      };
      registry.onLost = async (nodeId, why) => void (await sandboxes.endAllOn(nodeId, why));
    }

    const proxy = new SandboxProxy(
      (id, port) => {
        const live = sandboxes.liveSandbox(id);
        const endpoint = live?.state === 'running' ? nodes.of(live.nodeId).endpoint(id, port) : undefined;
        return live && endpoint
          ? {
              ...endpoint,
              allowPublicTraffic: live.allowPublicTraffic,
              trafficAccessToken: live.trafficAccessToken,
              https: live.httpsPorts.includes(port),
              hostHeader: maskedHost(live.maskRequestHost, port),
            }
          : undefined;
      },
      metrics,
      logger.child({ component: 'proxy' }),
      (id) => sandboxes.wake(id),
    );
    sandboxes.on('ended', (id) => proxy.reset(id));

    let server: Server | undefined;
    let dispatchRequest: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
    const app = Fastify({
      loggerInstance: logger.child({ component: 'api' }) as FastifyBaseLogger,
      logController: new LogController({ disableRequestLogging: true }),
      bodyLimit: 1024 * 1024,
      serverFactory: (handler) => {
        const dispatch = (req: IncomingMessage, res: ServerResponse) => {
          const route = routeOf(req, config.domain) ?? signedFileRoute(req, sandboxes.liveSandboxes());
          if (route === 'unmatched') {
            res.writeHead(401, { 'content-type': 'application/json' }).end(
              JSON.stringify({
                code: 401,
                message: 'invalid signature: no live sandbox signed this file URL (it may have ended)',
              }),
            );
            req.resume();
            return;
          }
          if (route === 'invalid') {
            res.writeHead(400, { 'content-type': 'application/json' }).end(
              JSON.stringify({
                code: 400,
                message: 'the sandbox routing headers or host name are malformed',
              }),
            );
            req.resume();
          } else if (route) proxy.handle(req, res, route);
          else handler(req, res);
        };
        dispatchRequest = dispatch;
        server = config.tls ? createHttpsServer({ ...config.tls }, dispatch) : createHttpServer(dispatch);
        server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          if (tunnels?.handleUpgrade(req, socket, head)) return;
          const route = routeOf(req, config.domain);
          if (route && route !== 'invalid') proxy.handleUpgrade(req, socket, head, route);
          else socket.end('HTTP/1.1 404 Not Found\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
        });
        // Another replica carrying a sandbox's traffic to a node whose tunnel this one holds.
        server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
          if (!replica || !tunnels) {
            socket.end('HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n');
            return;
          }
          void serveForward(req, socket, head, {
            secret: () => replica.sharedSecret(),
            connect: (nodeId, sandboxId, port) => tunnels.connect(nodeId, sandboxId, port),
            log: logger.child({ component: 'replicas' }),
          });
        });
        // Sandbox streams live as long as they live: no request or idle timeout.
        server.requestTimeout = 0;
        server.timeout = 0;
        server.keepAliveTimeout = 65_000;
        return server;
      },
    });
    registerErrorHandling(app);
    await app.register(cookie);
    await registerServerRoutes(app, { version: config.version, metrics });
    await registerConsole(app, consoleDist());
    registerTemplateUploadRoute(app, templateBuilds);
    // Authorized by each volume's own token, not by an API key.
    registerVolumeContentRoutes(app, volumes);
    if (replica && artefactStores) registerReplicaRoutes(app, replica, artefactStores, buildFiles);
    if (registry) await registerNodeAgentRoutes(app, registry, nodeCommands, buildFiles, artefactStores);
    let selfUrl: string | undefined;
    await app.register(async (api) =>
      registerApiRoutes(api, {
        db: database.db,
        metrics,
        teams,
        quotas,
        sandboxes,
        snapshots,
        volumes,
        environments,
        sandboxEvents,
        webhooks: webhookService,
        templateCatalog,
        templateBuilds,
        registry,
        prices: config.metering?.prices,
        mcp: { selfUrl: () => selfUrl, domain: config.domain, version: config.version },
      }),
    );

    await app.listen({ host: config.host, port: config.port });
    const address = server?.address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const scheme = config.tls ? 'https' : 'http';
    const url = `${scheme}://${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`;
    // The API as this process reaches it itself (MCP's tools call it). Under TLS, whose
    // certificate this process's own fetch need not trust, a plain listener of its own on
    // loopback, serving the same requests the same way.
    let loopback: Server | undefined;
    if (config.tls && dispatchRequest) {
      const inside = createHttpServer(dispatchRequest);
      loopback = inside;
      await new Promise<void>((resolve, reject) => {
        inside.once('error', reject);
        inside.listen(0, '127.0.0.1', () => resolve());
      });
      selfUrl = `http://127.0.0.1:${(inside.address() as AddressInfo).port}`;
    } else
      selfUrl = /^(0\.0\.0\.0|::)$/.test(config.host)
        ? `http://${config.host === '::' ? '[::1]' : '127.0.0.1'}:${port}`
        : url;
    if (replica && !config.cluster?.advertiseUrl)
      // Listening on every address: the others reach it by the host's name.
      await replica.advertise(
        /^(0\.0\.0\.0|::)$/.test(config.host) ? `${scheme}://${hostname()}:${port}` : url,
      );

    // Environments whose desired state is running come back (in the background: a slow
    // one does not hold the server up). Among replicas, the leader's job.
    if (!replica || replica.leader)
      void environments
        .restore()
        .catch((e: Error) => logger.error({ err: e }, 'bringing environments back failed'));

    let closing: Promise<void> | undefined;
    return {
      url,
      firstApiKey: first.apiKey,
      app,
      sandboxes,
      teams,
      close(options) {
        closing ??= (async () => {
          await templateBuilds.stop();
          await environments.close();
          await sandboxes.stop(options);
          proxy.close();
          registry?.stop();
          await tunnels?.close();
          await direct?.close();
          server?.closeAllConnections();
          loopback?.closeAllConnections();
          loopback?.close();
          await app.close();
          await replica?.stop();
          await database.close();
        })();
        return closing;
      },
    };
  } catch (e) {
    for (const c of cleanup) await c().catch(() => {});
    throw e;
  }
}
