import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { resolve } from 'node:path';
import {
  ENVD_ACCESS_TOKEN_HEADER,
  ENVD_VERSION_HEADER,
  type EnvdEnvs,
  type EnvdMetrics,
  filesystem as fsp,
  process as pp,
} from '@aiva/protocol';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import { sameSecret } from './auth.js';
import type { Envd } from './context.js';
import { MetadataStore } from './fs/xattr.js';
import { downloadFile, uploadFiles } from './http/files.js';
import { init } from './http/init.js';
import { MetricsSampler } from './http/metrics.js';
import { json, jsonError } from './http/respond.js';
import { defaultBusyboxPath } from './native.js';
import { ProcessManager } from './process/manager.js';
import type { ShellFallback } from './process/shell-fallback.js';
import { filesystemService } from './rpc/filesystem-service.js';
import { processService } from './rpc/process-service.js';
import { EnvdState } from './state.js';
import { UserDatabase } from './users.js';
import { ENVD_VERSION } from './version.js';

export interface EnvdOptions {
  /** The native helper (aiva-exec). */
  helper: string;
  state?: EnvdState;
  /** Where passwd and group live (tests); /etc by default. */
  etc?: string;
  /** busybox sh where there is no /bin/bash; by default the busybox beside envd.js. */
  shellFallback?: ShellFallback;
}

/** Paths reachable without the access token (/files checks a token or a signature itself). */
const OPEN_PATHS = new Set(['GET /health', 'GET /files', 'POST /files', 'POST /init']);

export interface EnvdServer {
  server: Server;
  envd: Envd;
}

/** envd's HTTP server: the Connect services and the REST endpoints on one port. */
export function createEnvdServer(options: EnvdOptions): EnvdServer {
  // Processes start in other directories: the helper's path must not be relative.
  const helper = resolve(options.helper);
  const envd: Envd = {
    state: options.state ?? new EnvdState(),
    users: new UserDatabase(options.etc),
    helper,
    processes: new ProcessManager(
      helper,
      options.shellFallback ?? { bash: '/bin/bash', busybox: defaultBusyboxPath() },
    ),
    metadata: new MetadataStore(helper),
    ready: true,
  };
  const metrics = new MetricsSampler();

  const rest = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://envd');
    const route = `${req.method} ${url.pathname}`;
    switch (route) {
      case 'GET /health':
        if (!envd.ready) return json(res, 503, { message: 'envd is starting' });
        res.writeHead(204, { [ENVD_VERSION_HEADER]: ENVD_VERSION }).end();
        return;
      case 'GET /files':
      case 'HEAD /files':
        return downloadFile(envd, req, res, url);
      case 'POST /files':
        return uploadFiles(envd, req, res, url);
      case 'POST /init':
        return init(envd, req, res);
      case 'GET /envs':
        return json(res, 200, Object.fromEntries(envd.state.envVars) satisfies EnvdEnvs);
      case 'GET /metrics':
        return json(res, 200, (await metrics.read()) satisfies EnvdMetrics);
    }
    if (/^\/[\w.]+\/\w+$/.test(url.pathname)) {
      // A Connect procedure that does not exist.
      const body = JSON.stringify({ code: 'unimplemented', message: `procedure ${url.pathname} not found` });
      res.writeHead(404, { 'content-type': 'application/json', connection: 'close' }).end(body);
      req.resume();
      return;
    }
    jsonError(res, 404, `no route for ${route}`, req);
  };

  const rpc = connectNodeAdapter({
    routes: (router) => {
      router.service(pp.Process, processService(envd));
      router.service(fsp.Filesystem, filesystemService(envd));
    },
    fallback: (req, res) => {
      rest(req as IncomingMessage, res as ServerResponse).catch((e: Error) => {
        process.stderr.write(`envd: ${req.method} ${req.url}: ${e.stack ?? e.message}\n`);
        jsonError(res as ServerResponse, 500, e.message, req as IncomingMessage);
      });
    },
    jsonOptions: { ignoreUnknownFields: true },
    // Streams live as long as their processes; the SDK sets its own deadlines.
    shutdownSignal: undefined,
  });

  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const token = envd.state.accessToken;
    if (token !== undefined && !OPEN_PATHS.has(`${req.method} ${path}`)) {
      const presented = req.headers[ENVD_ACCESS_TOKEN_HEADER];
      if (typeof presented !== 'string' || !sameSecret(presented, token)) {
        jsonError(
          res,
          401,
          'unauthorized access, please provide a valid access token or method signing if supported',
          req,
        );
        return;
      }
    }
    rpc(req, res);
  });
  // Uploads and streams may take as long as they take.
  server.requestTimeout = 0;
  server.keepAliveTimeout = 65_000;
  return { server, envd };
}
