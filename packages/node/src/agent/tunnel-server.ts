// The node's end of the tunnel: an HTTP/2 server whose CONNECT streams reach sandbox ports.
// It serves a connection the node dialed itself (the reversed session, through NAT) and,
// optionally, a TLS listener the server dials (direct mode). Every stream carries a ticket
// minted with the node's tunnel key; the address dialed always comes from the node's records.
import { once } from 'node:events';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import {
  constants,
  createSecureServer,
  createServer,
  type Http2SecureServer,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type SecureServerOptions,
  type ServerHttp2Stream,
} from 'node:http2';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect as netConnect, type Socket } from 'node:net';
import {
  superviseSession,
  TUNNEL_HEADERS,
  TUNNEL_MAX_SESSION_MEMORY,
  TUNNEL_PATH,
  TUNNEL_PING_INTERVAL_MS,
  TUNNEL_REFUSALS,
  TUNNEL_SESSION_WINDOW,
  TUNNEL_STREAM_WINDOW,
  TUNNEL_UPGRADE,
  type TunnelRefusal,
  verifyTicket,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';

/** Where a sandbox's port is reached on this node. */
export interface TunnelTarget {
  host: string;
  port: number;
}

export interface TunnelServerOptions {
  nodeId: string;
  /** The key the server mints tickets with (issued at join). */
  tunnelKey: Uint8Array | string;
  /**
   * The address of a sandbox's port, from the node's own records; undefined when the node
   * has no such sandbox or it cannot take traffic now (paused, ending).
   */
  resolve: (sandboxId: string, port: number) => TunnelTarget | undefined | Promise<TunnelTarget | undefined>;
  log?: Logger;
  /** How long dialing a sandbox's port may take (ms). */
  dialTimeoutMs?: number;
  pingIntervalMs?: number;
  /** The clock tickets are checked against (tests). */
  now?: () => number;
}

/** The server refused to open the tunnel (401: bad credential; 426: protocol). */
export class TunnelDialError extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'TunnelDialError';
  }
}

/** A reversed session the node dialed. */
export interface TunnelConnection {
  /** Settles when the session is gone: with the reason, or undefined after a clean close. */
  readonly closed: Promise<Error | undefined>;
  /** Ends the session: GOAWAY, open streams may finish. */
  close(): void;
}

export interface DialOptions {
  /** Extra TLS options for an https: server URL (a CA, say). */
  tls?: Pick<RequestOptions, 'ca' | 'rejectUnauthorized' | 'servername'>;
  /** Gives up when no answer comes within this many ms. */
  timeoutMs?: number;
}

const AUTHORITY = /^([a-z0-9]{1,64}):(\d{1,5})$/;

interface OpenStream {
  stream: ServerHttp2Stream;
  upstream?: Socket;
}

export class TunnelServer {
  private readonly h2: Http2Server;
  private readonly secure = new Set<Http2SecureServer>();
  private readonly sessions = new Set<Http2Session>();
  /** Per sandbox, its open streams: `resetSandbox` cuts them off. */
  private readonly streams = new Map<string, Set<OpenStream>>();

  constructor(private readonly opts: TunnelServerOptions) {
    this.h2 = createServer(this.serverOptions());
    this.serve(this.h2);
  }

  private serverOptions() {
    return {
      settings: { initialWindowSize: TUNNEL_STREAM_WINDOW, enableConnectProtocol: false },
      maxSessionMemory: TUNNEL_MAX_SESSION_MEMORY,
    };
  }

  private serve(server: Http2Server | Http2SecureServer): void {
    server.on('session', (session: Http2Session) => {
      this.sessions.add(session);
      session.once('close', () => this.sessions.delete(session));
      session.on('error', (e) => this.opts.log?.warn({ err: e.message }, 'tunnel session error'));
      session.once('connect', () => session.setLocalWindowSize(TUNNEL_SESSION_WINDOW));
      superviseSession(session, this.opts.pingIntervalMs ?? TUNNEL_PING_INTERVAL_MS);
    });
    server.on('stream', (stream, headers) => {
      this.onStream(stream, headers).catch((e: Error) => {
        this.opts.log?.error({ err: e.message }, 'tunnel stream failed');
        if (!stream.destroyed) stream.close(constants.NGHTTP2_INTERNAL_ERROR);
      });
    });
  }

  /**
   * Dials the server (`url` is its base: http: or https:) and serves the reversed session
   * over that connection. Resolves once the server switched protocols; rejects with a
   * TunnelDialError when it refused. Reconnecting (with backoff) is the caller's business:
   * await `closed`, then dial again.
   */
  dial(url: string | URL, credential: string, options: DialOptions = {}): Promise<TunnelConnection> {
    const base = new URL(url);
    const target = new URL(TUNNEL_PATH, base);
    const send = base.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(target, {
      method: 'GET',
      headers: { connection: 'upgrade', upgrade: TUNNEL_UPGRADE, authorization: `Bearer ${credential}` },
      ...(base.protocol === 'https:' ? options.tls : {}),
      timeout: options.timeoutMs ?? 10_000,
      agent: false,
    });
    return new Promise<TunnelConnection>((resolve, reject) => {
      req.once('timeout', () =>
        req.destroy(new TunnelDialError(`${target.origin} did not answer the tunnel request`)),
      );
      req.once('error', (e) => reject(e instanceof TunnelDialError ? e : new TunnelDialError(e.message)));
      req.once('response', (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 1024) body += d;
        });
        res.once('end', () => {
          const why = body.trim() || res.statusMessage || '';
          reject(
            new TunnelDialError(
              `${target.origin} refused the tunnel: ${res.statusCode} ${why}`,
              res.statusCode,
            ),
          );
        });
      });
      req.once('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
        if (String(res.headers.upgrade).toLowerCase() !== TUNNEL_UPGRADE) {
          socket.destroy();
          reject(
            new TunnelDialError(`${target.origin} switched to ${res.headers.upgrade}, not ${TUNNEL_UPGRADE}`),
          );
          return;
        }
        socket.setTimeout(0);
        socket.setNoDelay(true);
        socket.setKeepAlive(true, 30_000);
        if (head.length) socket.unshift(head);
        let session: Http2Session | undefined;
        // The server makes the session synchronously inside emit('connection').
        this.h2.once('session', (s: Http2Session) => {
          session = s;
        });
        this.h2.emit('connection', socket);
        let reason: Error | undefined;
        session?.once('error', (e) => {
          reason = e;
        });
        socket.once('error', (e) => {
          reason ??= e;
        });
        const closed = once(socket, 'close').then(() => reason);
        resolve({
          closed,
          close: () => {
            if (session && !session.closed) session.close();
            else socket.destroy();
          },
        });
      });
      req.end();
    });
  }

  /** Serves direct mode: a TLS listener the server dials itself. Resolves with its address. */
  async listenDirect(tls: SecureServerOptions, port: number, host: string): Promise<AddressInfo> {
    const server = createSecureServer({ ...tls, ...this.serverOptions(), allowHTTP1: false });
    this.serve(server);
    this.secure.add(server);
    server.listen(port, host);
    await once(server, 'listening');
    return server.address() as AddressInfo;
  }

  /** Cuts off every stream to a sandbox (it ended or paused); how many there were. */
  resetSandbox(sandboxId: string): number {
    const set = this.streams.get(sandboxId);
    if (!set) return 0;
    this.streams.delete(sandboxId);
    for (const open of set) {
      open.upstream?.destroy();
      if (!open.stream.destroyed) open.stream.close(constants.NGHTTP2_CONNECT_ERROR);
    }
    return set.size;
  }

  /** Open streams per sandbox (for checks and metrics). */
  openStreams(sandboxId: string): number {
    return this.streams.get(sandboxId)?.size ?? 0;
  }

  /** Closes the listeners and every session now (their streams, and so their sandbox connections, with them). */
  async close(): Promise<void> {
    for (const session of this.sessions) session.destroy();
    const closing = [...this.secure].map((s) => new Promise<void>((r) => s.close(() => r())));
    this.secure.clear();
    await Promise.all(closing);
  }

  private refuse(stream: ServerHttp2Stream, why: TunnelRefusal): void {
    if (stream.destroyed || stream.headersSent) return;
    stream.respond({ ':status': TUNNEL_REFUSALS[why], [TUNNEL_HEADERS.error]: why }, { endStream: true });
  }

  private async onStream(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): Promise<void> {
    stream.on('error', () => {});
    const m = AUTHORITY.exec(headers[':authority'] ?? '');
    const port = Number(m?.[2]);
    if (headers[':method'] !== 'CONNECT' || !m || port < 1 || port > 65535) {
      this.refuse(stream, 'bad-request');
      return;
    }
    const sandboxId = m[1] ?? '';
    const { nodeId, tunnelKey } = this.opts;
    const verdict = verifyTicket(
      tunnelKey,
      { nodeId, sandboxId, port },
      headers[TUNNEL_HEADERS.ticket],
      headers[TUNNEL_HEADERS.ticketExp],
      this.opts.now?.() ?? Date.now(),
    );
    if (verdict !== 'ok') {
      this.opts.log?.warn({ sandbox: sandboxId, port, verdict }, 'tunnel stream refused: ticket');
      this.refuse(stream, 'bad-ticket');
      return;
    }
    const target = await this.opts.resolve(sandboxId, port);
    if (stream.destroyed) return;
    if (!target) {
      this.refuse(stream, 'sandbox-not-found');
      return;
    }
    const open: OpenStream = { stream };
    this.track(sandboxId, open);
    const upstream = netConnect({ host: target.host, port: target.port, allowHalfOpen: true });
    open.upstream = upstream;
    upstream.setTimeout(this.opts.dialTimeoutMs ?? 10_000, () =>
      upstream.destroy(Object.assign(new Error('dial timed out'), { code: 'ETIMEDOUT' })),
    );
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      upstream.setNoDelay(true);
      if (stream.destroyed) {
        upstream.destroy();
        return;
      }
      stream.respond({ ':status': 200 });
      // Each direction ends on its own (half-close): a FIN becomes END_STREAM and back.
      stream.pipe(upstream);
      upstream.pipe(stream);
    });
    upstream.once('error', (e: NodeJS.ErrnoException) => {
      if (!stream.headersSent) this.refuse(stream, e.code === 'ECONNREFUSED' ? 'port-closed' : 'dial-failed');
      else if (!stream.destroyed) stream.close(constants.NGHTTP2_CONNECT_ERROR);
    });
    // A reset from the server's side (the client went away) ends the sandbox connection too.
    stream.once('close', () => {
      upstream.destroy();
      this.untrack(sandboxId, open);
    });
  }

  private track(sandboxId: string, open: OpenStream): void {
    let set = this.streams.get(sandboxId);
    if (!set) {
      set = new Set();
      this.streams.set(sandboxId, set);
    }
    set.add(open);
  }

  private untrack(sandboxId: string, open: OpenStream): void {
    const set = this.streams.get(sandboxId);
    set?.delete(open);
    if (set?.size === 0) this.streams.delete(sandboxId);
  }
}
