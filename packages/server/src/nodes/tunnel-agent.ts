// An http.Agent whose connections are tunnel streams: a request's `host` is the sandbox id and
// its `port` the sandbox's port. Kept-alive connections are pooled per sandbox and port, as
// the Agent pools per host and port; upgrades (WebSockets) get a stream of their own.
import { Agent, type AgentOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';

/** Opens a byte stream to a sandbox's port (TunnelSessions.connect with the sandbox's node). */
export type SandboxConnector = (sandboxId: string, port: number) => Promise<Duplex>;

export interface TunnelAgentOptions extends AgentOptions {
  /**
   * Speak TLS inside the stream (E2B's httpsPorts): self-signed certificates pass and no SNI
   * is sent, as the proxy does on one host.
   */
  https?: boolean;
}

/** The socket methods the http client calls that a stream lacks; on a stream they do nothing. */
function socketLike(stream: Duplex): Socket {
  const s = stream as Duplex & Partial<Socket>;
  const self = () => s;
  s.setNoDelay ??= self as Socket['setNoDelay'];
  s.setKeepAlive ??= self as Socket['setKeepAlive'];
  s.ref ??= self as Socket['ref'];
  s.unref ??= self as Socket['unref'];
  // Node's HTTP client corks the request's head and body and writes them as one vector,
  // with an empty string among them; Http2Stream's vector write garbles the first bytes
  // of such a vector (seen on Node 20). The vector goes as one Buffer instead.
  const write = s._write?.bind(s);
  if (write)
    s._writev = (chunks, callback) => {
      const bytes = chunks.map(({ chunk, encoding }) =>
        Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string, encoding as BufferEncoding),
      );
      write(Buffer.concat(bytes), 'buffer' as BufferEncoding, callback);
    };
  // A pooled stream reset by the node must not crash the process; the request that holds it
  // (if any) has its own listener.
  s.on('error', () => {});
  return s as Socket;
}

export class TunnelAgent extends Agent {
  private readonly https: boolean;

  constructor(
    private readonly connectTo: SandboxConnector,
    options: TunnelAgentOptions = {},
  ) {
    const { https, ...agentOptions } = options;
    super({ keepAlive: true, maxSockets: 1024, ...agentOptions });
    this.https = https === true;
  }

  override createConnection(
    options: { host?: string | null; port?: number | string | null },
    callback: (err: Error | null, socket?: Duplex) => void,
  ): undefined {
    const sandboxId = String(options.host ?? '');
    const port = Number(options.port);
    this.connectTo(sandboxId, port).then(
      (stream) => {
        if (!this.https) {
          callback(null, socketLike(stream));
          return;
        }
        const secure = tlsConnect({ socket: stream, rejectUnauthorized: false, servername: '' });
        const failed = (e: Error) => {
          stream.destroy();
          callback(e);
        };
        secure.once('error', failed);
        secure.once('secureConnect', () => {
          secure.removeListener('error', failed);
          secure.on('error', () => {});
          callback(null, secure);
        });
      },
      (e: Error) => callback(e),
    );
    return undefined;
  }
}
