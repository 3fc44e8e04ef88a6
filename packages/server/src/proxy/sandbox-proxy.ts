import {
  Agent,
  type ClientRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type RequestOptions,
  request,
  type ServerResponse,
} from 'node:http';
import { Agent as TlsAgent, request as tlsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { ENVD_PORT } from '@aiva/protocol';
import type { Logger } from 'pino';
import { withoutSessionCookie } from '../auth/console-session-rules.js';
import type { ServerMetrics } from '../metrics/server-metrics.js';
import type { ProxyVia } from '../nodes/node-link.js';

/** Where a request for a sandbox goes. */
export interface ProxyRoute {
  sandboxId: string;
  port: number;
}

/** What the proxy must know of a sandbox to let a request through. */
export interface ProxyTarget {
  host: string;
  port: number;
  allowPublicTraffic: boolean;
  trafficAccessToken?: string;
  /** The port serves HTTPS (E2B's `network.httpsPorts`): reached over TLS, its certificate not checked. */
  https?: boolean;
  /** The Host header to send instead of the client's (E2B's `network.maskRequestHost`). */
  hostHeader?: string;
  /** Reached through these agents (a remote node's tunnel; `host` is then the sandbox id), not by address. */
  via?: ProxyVia;
}

const SANDBOX_ID = /^[a-z0-9]{1,64}$/;

/**
 * The sandbox a request is for, by E2B's routing headers (`E2b-Sandbox-Id`,
 * `E2b-Sandbox-Port`) or by its Host (`{port}-{sandboxId}.{domain}`). Undefined when it
 * is for the API; `invalid` when it names a sandbox badly.
 */
export function routeOf(
  req: IncomingMessage,
  domain: string | undefined,
): ProxyRoute | 'invalid' | undefined {
  const id = req.headers['e2b-sandbox-id'];
  if (typeof id === 'string') {
    const port = Number(req.headers['e2b-sandbox-port'] ?? ENVD_PORT);
    if (!SANDBOX_ID.test(id) || !Number.isInteger(port) || port < 1 || port > 65535) return 'invalid';
    return { sandboxId: id, port };
  }
  if (!domain) return undefined;
  const host = (req.headers.host ?? '').toLowerCase().replace(/:\d+$/, '');
  if (!host.endsWith(`.${domain}`)) return undefined;
  const label = host.slice(0, -(domain.length + 1));
  const m = /^(\d{1,5})-([a-z0-9]{1,64})$/.exec(label);
  if (!m) return label === 'api' ? undefined : 'invalid';
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return 'invalid';
  return { sandboxId: m[2] ?? '', port };
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'e2b-traffic-access-token',
]);

function forwardable(headers: IncomingHttpHeaders, keepUpgrade = false): IncomingHttpHeaders {
  const out: IncomingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) {
    if (HOP_BY_HOP.has(k) && !(keepUpgrade && (k === 'upgrade' || k === 'connection'))) continue;
    out[k] = v;
  }
  return out;
}

/**
 * The request's headers as the sandbox gets them: a masked Host, the client's kept in
 * X-Forwarded-Host; X-Forwarded-Proto set (http or https); the console's session cookie
 * taken out.
 */
function upstreamHeaders(
  req: IncomingMessage,
  target: ProxyTarget,
  keepUpgrade = false,
): IncomingHttpHeaders {
  const headers = forwardable(req.headers, keepUpgrade);
  // The web console's session is the server's, never the sandbox's.
  if (headers.cookie !== undefined) {
    const cookie = withoutSessionCookie(headers.cookie);
    if (cookie === undefined) delete headers.cookie;
    else headers.cookie = cookie;
  }
  if (target.hostHeader !== undefined) {
    if (req.headers.host !== undefined) headers['x-forwarded-host'] = req.headers.host;
    headers.host = target.hostHeader;
  }
  // How the client reached the proxy, so that a server in the sandbox can give it
  // addresses it can use (the browser template's DevTools answer ws:// or wss:// URLs).
  headers['x-forwarded-proto'] = (req.socket as TLSSocket).encrypted ? 'https' : 'http';
  return headers;
}

/**
 * Errors that say the sandbox's port answered, but not in the protocol the proxy spoke:
 * TLS to a plain port (EPROTO), or plain HTTP to an HTTPS port (the server resets the
 * connection, or sends bytes that are no HTTP).
 */
function protocolMismatch(e: NodeJS.ErrnoException, https: boolean): boolean {
  const code = e.code ?? '';
  if (code.startsWith('HPE_') || code === 'EPROTO' || code.startsWith('ERR_SSL')) return true;
  return !https && code === 'ECONNRESET';
}

/** envd's paths that only the node may call: they never pass the proxy. */
const ENVD_INTERNAL = [/^\/init(\/|\?|$)/];

/**
 * Passes sandbox traffic through: requests and responses stream both ways as they come,
 * without buffering and without an idle timeout; upgrades (WebSockets) are spliced.
 * Answers E2B's 502 bodies when the sandbox is unknown or the port closed, never lets
 * envd's internal routes through, and only ever connects to a sandbox's own address.
 * When a sandbox ends, a request still waiting for its answer gets the 502 of a sandbox
 * not found (as a request made a moment later would); streams already answering and
 * WebSockets are reset.
 */
export class SandboxProxy {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 1024 });
  /** For ports that serve HTTPS: self-signed certificates pass, and no SNI is sent (E2B's httpsPorts). */
  private readonly tlsAgent = new TlsAgent({ keepAlive: true, maxSockets: 1024, rejectUnauthorized: false });
  /** Per sandbox, how to cut off each exchange (request or WebSocket) it has in flight. */
  private readonly open = new Map<string, Set<() => void>>();

  constructor(
    private readonly lookup: (sandboxId: string, port: number) => ProxyTarget | undefined,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
    /** Resumes a paused sandbox that asked to be woken by traffic; true if it now runs. */
    private readonly wake: (sandboxId: string) => Promise<boolean> = async () => false,
  ) {}

  /** Runs `then` once the sandbox runs: at once, or after waking it if it sleeps. */
  private whenAwake(route: ProxyRoute, then: () => void): void {
    if (this.lookup(route.sandboxId, route.port)) {
      then();
      return;
    }
    void this.wake(route.sandboxId).then(then, then);
  }

  /**
   * Records an exchange as in flight for a sandbox until the returned function is called
   * (a kept-alive connection may carry another sandbox's next request).
   */
  private track(id: string, cutOff: () => void): () => void {
    let set = this.open.get(id);
    if (!set) {
      set = new Set();
      this.open.set(id, set);
    }
    set.add(cutOff);
    return () => {
      const current = this.open.get(id);
      current?.delete(cutOff);
      if (current?.size === 0) this.open.delete(id);
    };
  }

  /** The sandbox ended: cuts off every exchange it has in flight at once. */
  reset(sandboxId: string): void {
    const set = this.open.get(sandboxId);
    if (!set) return;
    this.open.delete(sandboxId);
    for (const cutOff of set) cutOff();
  }

  private refuse(res: ServerResponse, status: number, body: object): void {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  /** Checks access; returns the target or answers the request itself. */
  private admit(req: IncomingMessage, route: ProxyRoute, answer: (status: number, body: object) => void) {
    const kind = route.port === ENVD_PORT ? 'envd' : 'other';
    const target = this.lookup(route.sandboxId, route.port);
    if (!target) {
      this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: 'not_found' });
      answer(502, { sandboxId: route.sandboxId, message: 'The sandbox was not found', code: 502 });
      return undefined;
    }
    if (route.port === ENVD_PORT && ENVD_INTERNAL.some((r) => r.test(req.url ?? '/'))) {
      this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: 'forbidden' });
      answer(403, { code: 403, message: 'this envd route is not reachable through the proxy' });
      return undefined;
    }
    if (!target.allowPublicTraffic && route.port !== ENVD_PORT) {
      const token = req.headers['e2b-traffic-access-token'];
      if (token !== target.trafficAccessToken) {
        this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: 'forbidden' });
        answer(403, {
          code: 403,
          message: `sandbox ${route.sandboxId} takes traffic only with its e2b-traffic-access-token`,
        });
        return undefined;
      }
    }
    return target;
  }

  private portClosed(route: ProxyRoute) {
    return {
      message: 'The sandbox is running but port is not open',
      sandboxId: route.sandboxId,
      port: route.port,
      code: 502,
    };
  }

  /** The 502 for an upstream error: port closed, wrong protocol, or the sandbox gone. */
  private upstreamFailure(route: ProxyRoute, target: ProxyTarget, e: NodeJS.ErrnoException) {
    if (e.code === 'ECONNREFUSED') return this.portClosed(route);
    // A remote node whose tunnel is down (it reconnects by itself).
    if (e.code === 'EAIVA_NO_TUNNEL')
      return {
        sandboxId: route.sandboxId,
        message: "The sandbox's node is not connected to this server right now: try again shortly",
        code: 502,
      };
    // A reset from a sandbox that has just ended is no protocol's fault.
    if (protocolMismatch(e, target.https === true) && this.lookup(route.sandboxId, route.port))
      return {
        ...this.portClosed(route),
        message: target.https
          ? `The sandbox is running but port ${route.port} did not answer TLS: it is listed in network.httpsPorts, so the proxy speaks HTTPS to it`
          : `The sandbox is running but port ${route.port} did not answer HTTP: if it serves HTTPS, list it in network.httpsPorts when creating the sandbox`,
      };
    return { sandboxId: route.sandboxId, message: 'The sandbox was not found', code: 502 };
  }

  /** A request to the sandbox's address: over TLS to an HTTPS port. */
  private upstreamRequest(target: ProxyTarget, options: RequestOptions): ClientRequest {
    const where = { ...options, host: target.host, port: target.port };
    // Through a tunnel the agent makes each connection (TLS inside it for an HTTPS port).
    if (target.via) return request({ ...where, agent: target.https ? target.via.https : target.via.plain });
    if (!target.https) return request(where);
    return tlsRequest({
      ...where,
      agent: options.agent === undefined ? undefined : this.tlsAgent,
      rejectUnauthorized: false,
      servername: '',
    });
  }

  handle(req: IncomingMessage, res: ServerResponse, route: ProxyRoute): void {
    this.whenAwake(route, () => this.forward(req, res, route));
  }

  private forward(req: IncomingMessage, res: ServerResponse, route: ProxyRoute): void {
    const kind = route.port === ENVD_PORT ? 'envd' : 'other';
    const target = this.admit(req, route, (s, b) => this.refuse(res, s, b));
    if (!target) {
      req.resume();
      return;
    }
    req.socket.setTimeout(0);
    let cut = false;
    const untrack = this.track(route.sandboxId, () => {
      cut = true;
      upstream.destroy();
      if (res.headersSent) {
        res.destroy();
        return;
      }
      this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: 'not_found' });
      req.resume();
      this.refuse(res, 502, { sandboxId: route.sandboxId, message: 'The sandbox was not found', code: 502 });
    });
    res.once('close', untrack);
    const upstream = this.upstreamRequest(target, {
      method: req.method,
      path: req.url,
      headers: upstreamHeaders(req, target),
      agent: this.agent,
    });
    upstream.on('socket', (s: Socket) => {
      s.setTimeout(0);
      s.setNoDelay(true);
    });
    upstream.on('response', (up) => {
      if (cut) return;
      this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: 'proxied' });
      res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardable(up.headers));
      // A stream's headers go on at once, not with its first bytes: a client may time the
      // wait for them (the code interpreter's requestTimeoutMs, while a run is queued).
      if (up.headers['content-length'] === undefined) res.flushHeaders();
      up.pipe(res);
      up.on('error', () => res.destroy());
      up.on('aborted', () => res.destroy());
    });
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      if (cut) return;
      if (res.headersSent) {
        res.destroy();
        return;
      }
      const refused = e.code === 'ECONNREFUSED';
      this.metrics.proxiedRequests.inc({ port_kind: kind, outcome: refused ? 'port_closed' : 'error' });
      if (!refused)
        this.log.warn({ sandbox: route.sandboxId, port: route.port, err: e.message }, 'proxy error');
      this.refuse(res, 502, this.upstreamFailure(route, target, e));
    });
    // The client went away: so does the request to the sandbox.
    res.once('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  /** A request to switch protocols (WebSocket): spliced to the sandbox once it agrees. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, route: ProxyRoute): void {
    this.whenAwake(route, () => this.forwardUpgrade(req, socket, head, route));
  }

  private forwardUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, route: ProxyRoute): void {
    const answer = (status: number, body: object) => {
      const text = JSON.stringify(body);
      socket.end(
        `HTTP/1.1 ${status} ${status === 403 ? 'Forbidden' : 'Bad Gateway'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`,
      );
    };
    const target = this.admit(req, route, answer);
    if (!target) return;
    const sockets = new Set<Duplex>([socket]);
    const untrack = this.track(route.sandboxId, () => {
      for (const s of sockets) s.destroy();
    });
    socket.once('close', untrack);
    const upstream = this.upstreamRequest(target, {
      method: req.method,
      path: req.url,
      headers: upstreamHeaders(req, target, true),
    });
    upstream.on('upgrade', (up, upSocket, upHead) => {
      sockets.add(upSocket);
      const lines = [`HTTP/1.1 ${up.statusCode} ${up.statusMessage}`];
      for (let i = 0; i < up.rawHeaders.length; i += 2)
        lines.push(`${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      if (upHead.length) socket.write(upHead);
      if (head.length) upSocket.write(head);
      upSocket.pipe(socket).pipe(upSocket);
      upSocket.on('error', () => socket.destroy());
      socket.on('error', () => upSocket.destroy());
    });
    upstream.on('response', (up) => {
      // The sandbox answered without switching: pass its answer on and close.
      const lines = [`HTTP/1.1 ${up.statusCode} ${up.statusMessage}`];
      for (let i = 0; i < up.rawHeaders.length; i += 2)
        lines.push(`${up.rawHeaders[i]}: ${up.rawHeaders[i + 1]}`);
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
      up.pipe(socket);
    });
    upstream.on('error', (e: NodeJS.ErrnoException) => answer(502, this.upstreamFailure(route, target, e)));
    upstream.end();
  }

  close(): void {
    for (const id of [...this.open.keys()]) this.reset(id);
    this.agent.destroy();
    this.tlsAgent.destroy();
  }
}
