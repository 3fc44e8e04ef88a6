// The server's end of the tunnel: takes a node's Upgrade on the HTTP server, runs HTTP/2 as
// the client over that connection, keeps one session per node, and opens CONNECT streams to
// sandbox ports through it (each with a fresh ticket).
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  constants,
  connect as h2connect,
  type IncomingHttpHeaders,
} from 'node:http2';
import type { Duplex } from 'node:stream';
import {
  mintTicket,
  superviseSession,
  TICKET_TTL_MS,
  TUNNEL_HEADERS,
  TUNNEL_MAX_SESSION_MEMORY,
  TUNNEL_PATH,
  TUNNEL_PING_INTERVAL_MS,
  TUNNEL_SESSION_WINDOW,
  TUNNEL_STREAM_WINDOW,
  TUNNEL_UPGRADE,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';

/** A node, as its tunnel credential names it. */
export interface TunnelNode {
  nodeId: string;
  tunnelKey: Uint8Array | string;
}

/** Why a stream could not be opened. `code` reads like a socket error's, for the proxy. */
export type TunnelFailure =
  | 'no-session'
  | 'session-closed'
  | 'bad-ticket'
  | 'sandbox-not-found'
  | 'port-closed'
  | 'dial-failed'
  | 'refused';

const ERRNO: Record<TunnelFailure, string> = {
  'no-session': 'EAIVA_NO_TUNNEL',
  'session-closed': 'ECONNRESET',
  'bad-ticket': 'EAIVA_TICKET',
  'sandbox-not-found': 'EAIVA_SANDBOX_NOT_FOUND',
  // What a dial to a closed port says, so the proxy answers E2B's "port is not open".
  'port-closed': 'ECONNREFUSED',
  'dial-failed': 'EHOSTUNREACH',
  refused: 'EAIVA_TUNNEL_REFUSED',
};

export class TunnelConnectError extends Error {
  readonly code: string;
  constructor(
    readonly reason: TunnelFailure,
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TunnelConnectError';
    this.code = ERRNO[reason];
  }
}

export interface TunnelSessionsOptions {
  /** The node a bearer credential belongs to; undefined refuses it (401). */
  authenticate: (credential: string) => TunnelNode | undefined | Promise<TunnelNode | undefined>;
  log?: Logger;
  pingIntervalMs?: number;
  ticketTtlMs?: number;
}

interface NodeSession {
  node: TunnelNode;
  session: ClientHttp2Session;
}

/**
 * The tunnels of the nodes connected to this server. Emits `up` (nodeId) when a node's
 * session is ready and `down` (nodeId, reason?) when it is gone.
 */
export class TunnelSessions extends EventEmitter {
  private readonly nodes = new Map<string, NodeSession>();
  private closing = false;

  constructor(private readonly opts: TunnelSessionsOptions) {
    super();
    // Every stream waiting for a node's tunnel listens for its `up` (NodeRegistry.reach).
    this.setMaxListeners(0);
  }

  /** Is this an Upgrade for the tunnel? (The HTTP server's other upgrades are the proxy's.) */
  static isTunnelRequest(req: IncomingMessage): boolean {
    return (req.url ?? '').split('?')[0] === TUNNEL_PATH;
  }

  /**
   * Handles the HTTP server's `upgrade` for the tunnel path: true if it took the request
   * (answered or switched), false to leave it to another handler.
   */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    if (!TunnelSessions.isTunnelRequest(req)) return false;
    socket.on('error', () => {});
    const fail = (status: number, text: string, message: string) => {
      const body = JSON.stringify({ code: status, message });
      socket.end(
        `HTTP/1.1 ${status} ${text}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    };
    if (req.method !== 'GET') {
      fail(405, 'Method Not Allowed', `the tunnel is opened with GET ${TUNNEL_PATH}`);
      return true;
    }
    if ((req.headers.upgrade ?? '').toLowerCase() !== TUNNEL_UPGRADE) {
      fail(400, 'Bad Request', `the tunnel speaks Upgrade: ${TUNNEL_UPGRADE}`);
      return true;
    }
    const m = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? '');
    const refuse = () => {
      this.opts.log?.warn({ from: req.socket.remoteAddress }, 'tunnel refused: bad node credential');
      fail(401, 'Unauthorized', 'the node credential is missing, unknown or revoked');
    };
    if (!m?.[1] || this.closing) {
      if (this.closing) fail(503, 'Service Unavailable', 'the server is shutting down');
      else refuse();
      return true;
    }
    Promise.resolve(this.opts.authenticate(m[1])).then(
      (node) => {
        if (!node) refuse();
        else if (socket.destroyed) return;
        else this.open(node, socket, head);
      },
      (e: Error) => {
        this.opts.log?.error({ err: e.message }, 'tunnel authentication failed');
        fail(500, 'Internal Server Error', 'could not check the node credential');
      },
    );
    return true;
  }

  private open(node: TunnelNode, socket: Duplex, head: Buffer): void {
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: ${TUNNEL_UPGRADE}\r\n\r\n`,
    );
    const tcp = socket as Duplex & { setNoDelay?: (on: boolean) => void; setTimeout?: (ms: number) => void };
    // The HTTP server's sockets stay half open after the peer's FIN; a node that went away
    // must end the session (and its streams) at once.
    socket.allowHalfOpen = false;
    tcp.setNoDelay?.(true);
    tcp.setTimeout?.(0);
    if (head.length) socket.unshift(head);
    const session = h2connect(`http://${node.nodeId}.tunnel.invalid`, {
      createConnection: () => socket,
      settings: { initialWindowSize: TUNNEL_STREAM_WINDOW, enablePush: false },
      maxSessionMemory: TUNNEL_MAX_SESSION_MEMORY,
    });
    const entry: NodeSession = { node, session };
    const previous = this.nodes.get(node.nodeId);
    this.nodes.set(node.nodeId, entry);
    // A node that reconnects replaces its old session; streams on the old one may finish.
    previous?.session.close();
    let reason: Error | undefined;
    session.on('error', (e) => {
      reason = e;
      this.opts.log?.warn({ node: node.nodeId, err: e.message }, 'tunnel session error');
    });
    session.once('connect', () => {
      session.setLocalWindowSize(TUNNEL_SESSION_WINDOW);
      this.opts.log?.info({ node: node.nodeId }, 'tunnel up');
      this.emit('up', node.nodeId);
    });
    session.once('close', () => {
      if (this.nodes.get(node.nodeId) === entry) {
        this.nodes.delete(node.nodeId);
        this.opts.log?.info({ node: node.nodeId, err: reason?.message }, 'tunnel down');
        this.emit('down', node.nodeId, reason);
      }
    });
    superviseSession(session, this.opts.pingIntervalMs ?? TUNNEL_PING_INTERVAL_MS);
  }

  /** Nodes with a session on this server. */
  connected(): string[] {
    return [...this.nodes.keys()];
  }

  has(nodeId: string): boolean {
    const s = this.nodes.get(nodeId)?.session;
    return s !== undefined && !s.closed && !s.destroyed;
  }

  /**
   * A byte stream to a sandbox's port on a node: resolves once the node dialed it; rejects
   * with a TunnelConnectError at once when the node has no session here.
   */
  connect(nodeId: string, sandboxId: string, port: number): Promise<ClientHttp2Stream> {
    const entry = this.nodes.get(nodeId);
    if (!entry || entry.session.closed || entry.session.destroyed)
      return Promise.reject(
        new TunnelConnectError('no-session', `node ${nodeId} has no tunnel to this server`),
      );
    return openConnectStream(entry.session, entry.node, sandboxId, port, this.opts.ticketTtlMs, 'tunnel');
  }

  /** Ends a node's session (it was removed): its streams are reset. */
  disconnect(nodeId: string): void {
    this.nodes.get(nodeId)?.session.destroy();
  }

  /** Ends every session (GOAWAY, then gone) and takes no new ones. */
  async close(): Promise<void> {
    this.closing = true;
    const sessions = [...this.nodes.values()].map((e) => e.session);
    await Promise.all(
      sessions.map(
        (s) =>
          new Promise<void>((r) => {
            if (s.destroyed) return r();
            s.once('close', () => r());
            s.destroy();
          }),
      ),
    );
  }
}

/**
 * Opens a CONNECT stream to a sandbox's port on `session` (the node's tunnel, or a direct
 * connection to it) with a fresh ticket; resolves once the node answered 200.
 */
export function openConnectStream(
  session: ClientHttp2Session,
  node: TunnelNode,
  sandboxId: string,
  port: number,
  ttlMs: number | undefined,
  via: 'tunnel' | 'direct connection',
): Promise<ClientHttp2Stream> {
  const { nodeId } = node;
  const { ticket, exp } = mintTicket(node.tunnelKey, { nodeId, sandboxId, port }, ttlMs ?? TICKET_TTL_MS);
  return new Promise((resolve, reject) => {
    let stream: ClientHttp2Stream;
    try {
      stream = session.request(
        {
          ':method': 'CONNECT',
          ':authority': `${sandboxId}:${port}`,
          [TUNNEL_HEADERS.ticket]: ticket,
          [TUNNEL_HEADERS.ticketExp]: String(exp),
        },
        { endStream: false },
      );
    } catch (e) {
      reject(
        new TunnelConnectError(
          'session-closed',
          `node ${nodeId}'s ${via} is closing: ${(e as Error).message}`,
        ),
      );
      return;
    }
    let settled = false;
    const failed = (e?: Error) => {
      if (settled) return;
      settled = true;
      reject(
        new TunnelConnectError(
          'session-closed',
          `node ${nodeId}'s ${via} closed before sandbox ${sandboxId}:${port} answered${e ? `: ${e.message}` : ''}`,
        ),
      );
    };
    stream.once('error', failed);
    stream.once('close', () => failed());
    stream.once('response', (headers: IncomingHttpHeaders) => {
      if (settled) return;
      settled = true;
      stream.removeListener('error', failed);
      const status = Number(headers[':status']);
      if (status === 200) {
        resolve(stream);
        return;
      }
      stream.on('error', () => {});
      stream.close(constants.NGHTTP2_CANCEL);
      reject(refusal(nodeId, sandboxId, port, status, headers[TUNNEL_HEADERS.error]));
    });
  });
}

function refusal(
  nodeId: string,
  sandboxId: string,
  port: number,
  status: number,
  error: string | string[] | undefined,
): TunnelConnectError {
  const what = `${sandboxId}:${port} on node ${nodeId}`;
  if (status === 403)
    return new TunnelConnectError('bad-ticket', `node ${nodeId} refused the ticket for ${what}`, 403);
  if (status === 404) return new TunnelConnectError('sandbox-not-found', `no sandbox ${what}`, 404);
  if (status === 502 && error === 'port-closed')
    return new TunnelConnectError('port-closed', `nothing listens on ${what}`, 502);
  if (status === 502)
    return new TunnelConnectError('dial-failed', `node ${nodeId} could not reach ${what}`, 502);
  return new TunnelConnectError(
    'refused',
    `node ${nodeId} answered ${status} (${error ?? 'no reason'}) for ${what}`,
    status,
  );
}
