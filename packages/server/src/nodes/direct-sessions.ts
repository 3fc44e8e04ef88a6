// Direct mode: the server dials a node's TLS listener (`aiva node join --direct-address`)
// and opens the same CONNECT streams, with the same tickets, as on the node's tunnel. The
// listener's certificate is self-signed; the fingerprint the node reported is pinned (no
// CA). When the direct connection cannot be had, traffic goes through the tunnel, and why
// is logged once until direct works again.

import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import type { Duplex } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import {
  DIRECT_ALPN,
  normalizeFingerprint,
  superviseSession,
  TUNNEL_MAX_SESSION_MEMORY,
  TUNNEL_SESSION_WINDOW,
  TUNNEL_STREAM_WINDOW,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';
import { openConnectStream, TunnelConnectError, type TunnelNode } from './tunnel-sessions.js';

/** Where a node's direct listener is and the fingerprint of its certificate (lower-case hex). */
export interface DirectTarget {
  address: string;
  fingerprint: string;
}

export interface DirectSessionsOptions {
  log?: Logger;
  /** How long a TLS connection to a node may take (ms). */
  dialTimeoutMs?: number;
  /** After a failure, how long traffic goes through the tunnel before direct is tried again (ms). */
  retryAfterMs?: number;
  /** PING interval of direct sessions: one silent for two intervals is dropped (ms). */
  pingIntervalMs?: number;
  ticketTtlMs?: number;
}

interface Entry {
  target: DirectTarget;
  session?: Promise<ClientHttp2Session>;
  /** Whether the session is up now. */
  up: boolean;
  failedUntil: number;
  /** The last failure, shown by `aiva node ls`; logged once per run of failures. */
  error?: string;
}

/** `host:port`, an IPv6 host in brackets. */
function splitAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(address);
  if (!m) throw new Error(`${address} is not host:port`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** A TLS connection to `target` whose certificate is the pinned one and whose ALPN is h2. */
export function dialPinned(target: DirectTarget, timeoutMs: number): Promise<TLSSocket> {
  const { host, port } = splitAddress(target.address);
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host,
      port,
      ALPNProtocols: [DIRECT_ALPN],
      // The chain is not checked against a CA: the certificate itself is pinned below.
      rejectUnauthorized: false,
      servername: '',
    });
    const fail = (e: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(e);
    };
    const timer = setTimeout(
      () => fail(new Error(`no TLS handshake with ${target.address} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    socket.once('error', fail);
    socket.once('secureConnect', () => {
      const got = normalizeFingerprint(socket.getPeerCertificate().fingerprint256);
      if (got !== target.fingerprint)
        return fail(
          new Error(
            `${target.address} presented a certificate with fingerprint ${got ?? '(none)'}, not the node's ${target.fingerprint}`,
          ),
        );
      if (socket.alpnProtocol !== DIRECT_ALPN)
        return fail(
          new Error(`${target.address} did not agree to ${DIRECT_ALPN} (ALPN ${socket.alpnProtocol})`),
        );
      clearTimeout(timer);
      socket.removeListener('error', fail);
      socket.setNoDelay(true);
      resolve(socket);
    });
  });
}

export class DirectSessions {
  private readonly nodes = new Map<string, Entry>();
  private closed = false;

  constructor(private readonly opts: DirectSessionsOptions = {}) {}

  /** `direct` when traffic to the node goes to its direct listener now, else `tunnel`. */
  mode(nodeId: string): 'direct' | 'tunnel' {
    return this.nodes.get(nodeId)?.up ? 'direct' : 'tunnel';
  }

  /** Why the last direct connection to the node failed, while it is not up. */
  lastError(nodeId: string): string | undefined {
    const e = this.nodes.get(nodeId);
    return e && !e.up ? e.error : undefined;
  }

  /**
   * Makes sure a node's direct session is up (or being dialled) for `target` — a changed
   * address or certificate drops the old one — unless a failure is recent. Called on each
   * of the node's snapshots, so `aiva node ls` shows the mode before any traffic.
   */
  prepare(node: TunnelNode, target: DirectTarget): void {
    const e = this.entry(node.nodeId, target);
    if (e.session || e.failedUntil > Date.now() || this.closed) return;
    void this.session(node, e).catch(() => {});
  }

  /**
   * A stream to a sandbox's port through the node's direct listener, or — when there is no
   * direct connection to be had, or it broke before the node answered — through `fallback`
   * (the tunnel). The node's own refusals (bad ticket, no sandbox, closed port) stand.
   */
  async connect(
    node: TunnelNode,
    target: DirectTarget,
    sandboxId: string,
    port: number,
    fallback: () => Promise<Duplex>,
  ): Promise<Duplex> {
    const e = this.entry(node.nodeId, target);
    if (this.closed || (!e.session && e.failedUntil > Date.now())) return fallback();
    let session: ClientHttp2Session;
    try {
      session = await this.session(node, e);
    } catch {
      return fallback();
    }
    try {
      return await openConnectStream(
        session,
        node,
        sandboxId,
        port,
        this.opts.ticketTtlMs,
        'direct connection',
      );
    } catch (err) {
      if (err instanceof TunnelConnectError && err.reason === 'session-closed') {
        this.failed(node.nodeId, e, err);
        return fallback();
      }
      throw err;
    }
  }

  /** Drops a node's direct session (it left). */
  forget(nodeId: string): void {
    const e = this.nodes.get(nodeId);
    this.nodes.delete(nodeId);
    const session = e?.session;
    if (e) e.session = undefined;
    void session?.then((s) => s.destroy()).catch(() => {});
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.nodes.keys()].map((id) => this.forget(id)));
  }

  private entry(nodeId: string, target: DirectTarget): Entry {
    let e = this.nodes.get(nodeId);
    if (e && (e.target.address !== target.address || e.target.fingerprint !== target.fingerprint)) {
      this.opts.log?.info({ node: nodeId, address: target.address }, 'node’s direct listener changed');
      this.forget(nodeId);
      e = undefined;
    }
    if (!e) {
      e = { target, up: false, failedUntil: 0 };
      this.nodes.set(nodeId, e);
    }
    return e;
  }

  private failed(nodeId: string, e: Entry, err: Error): void {
    const first = e.error === undefined || e.up;
    e.up = false;
    e.error = err.message;
    e.session = undefined;
    e.failedUntil = Date.now() + (this.opts.retryAfterMs ?? 30_000);
    if (first)
      this.opts.log?.warn(
        { node: nodeId, address: e.target.address, err: err.message },
        'direct connection to the node failed: its traffic goes through its tunnel',
      );
  }

  private session(node: TunnelNode, e: Entry): Promise<ClientHttp2Session> {
    if (e.session) return e.session;
    const made = (async () => {
      const socket = await dialPinned(e.target, this.opts.dialTimeoutMs ?? 3000);
      const session = h2connect(`https://${e.target.address}`, {
        createConnection: () => socket,
        settings: { initialWindowSize: TUNNEL_STREAM_WINDOW, enablePush: false },
        maxSessionMemory: TUNNEL_MAX_SESSION_MEMORY,
      });
      session.on('error', () => {});
      session.once('connect', () => session.setLocalWindowSize(TUNNEL_SESSION_WINDOW));
      superviseSession(session, this.opts.pingIntervalMs ?? 5000);
      session.once('close', () => {
        if (e.session === made) this.failed(node.nodeId, e, new Error('the direct connection closed'));
      });
      return session;
    })();
    e.session = made;
    made.then(
      () => {
        if (e.session !== made) return;
        const was = e.up;
        e.up = true;
        if (!was)
          this.opts.log?.info(
            { node: node.nodeId, address: e.target.address },
            'direct connection to the node up',
          );
        e.error = undefined;
      },
      (err: Error) => {
        if (e.session === made) this.failed(node.nodeId, e, err);
      },
    );
    return made;
  }
}
