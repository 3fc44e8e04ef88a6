// Sandbox traffic for a node whose tunnel another replica holds: this replica opens an HTTP
// CONNECT to that one, which carries the stream on to the node. Each CONNECT names the node
// and the sandbox's port and is signed with the secret the replicas share.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';

const NODE_HEADER = 'aiva-forward-node';
const AUTH_HEADER = 'aiva-forward-auth';
const ERROR_HEADER = 'aiva-forward-error';
/** How far the clocks of two replicas may disagree. */
const MAX_SKEW_MS = 60_000;
const CONNECT_TIMEOUT_MS = 10_000;

function sign(secret: Buffer, nodeId: string, target: string, at: number): string {
  return createHmac('sha256', secret).update(`${nodeId}\n${target}\n${at}`).digest('hex');
}

/** Opens a stream to `sandboxId`:`port` on `nodeId` through the replica at `url`. */
/** The replica to forward to did not answer at all (it died, or is not there yet). */
export class ReplicaUnreachableError extends Error {
  override name = 'ReplicaUnreachableError';
}

export function forwardConnect(
  url: string,
  secret: Buffer,
  nodeId: string,
  sandboxId: string,
  port: number,
): Promise<Duplex> {
  const u = new URL(url);
  const target = `${sandboxId}:${port}`;
  const at = Date.now();
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request({
      host: u.hostname,
      port: u.port || (u.protocol === 'https:' ? 443 : 80),
      method: 'CONNECT',
      path: target,
      headers: { [NODE_HEADER]: nodeId, [AUTH_HEADER]: `${at}.${sign(secret, nodeId, target, at)}` },
      timeout: CONNECT_TIMEOUT_MS,
    });
    req.once('connect', (res: IncomingMessage, socket: Socket, head: Buffer) => {
      if (res.statusCode !== 200) {
        socket.destroy();
        const why = res.headers[ERROR_HEADER];
        reject(
          new Error(`the replica at ${u.host} could not reach node ${nodeId}: ${why ?? res.statusCode}`),
        );
        return;
      }
      if (head.length) socket.unshift(head);
      socket.setNoDelay(true);
      resolve(socket);
    });
    req.once('timeout', () =>
      req.destroy(new ReplicaUnreachableError(`the replica at ${u.host} did not answer in time`)),
    );
    req.once('error', (e) =>
      reject(
        e instanceof ReplicaUnreachableError
          ? e
          : new ReplicaUnreachableError(`cannot reach the replica at ${u.host}: ${e.message}`),
      ),
    );
    req.end();
  });
}

/**
 * Serves other replicas' CONNECTs (the http server's `connect` event): checks the
 * signature, opens the stream on the node's tunnel, and splices the two.
 */
export async function serveForward(
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  o: {
    secret: () => Promise<Buffer>;
    connect: (nodeId: string, sandboxId: string, port: number) => Promise<Duplex>;
    log: Logger;
  },
): Promise<void> {
  const refuse = (status: number, why: string) => {
    socket.end(`HTTP/1.1 ${status} Refused\r\n${ERROR_HEADER}: ${why}\r\ncontent-length: 0\r\n\r\n`);
  };
  socket.on('error', () => {});
  const nodeId = String(req.headers[NODE_HEADER] ?? '');
  const target = req.url ?? '';
  const [atText = '', mac = ''] = String(req.headers[AUTH_HEADER] ?? '').split('.');
  const at = Number(atText);
  const m = /^([a-z0-9]+):(\d{1,5})$/.exec(target);
  if (!m || !nodeId) return refuse(400, 'malformed forward');
  const expected = Buffer.from(sign(await o.secret(), nodeId, target, at), 'hex');
  const given = Buffer.from(mac, 'hex');
  if (
    !Number.isFinite(at) ||
    Math.abs(Date.now() - at) > MAX_SKEW_MS ||
    given.length !== expected.length ||
    !timingSafeEqual(given, expected)
  ) {
    o.log.warn({ address: req.socket.remoteAddress, node: nodeId }, 'refused a forward: bad signature');
    return refuse(403, 'bad signature');
  }
  let stream: Duplex;
  try {
    stream = await o.connect(nodeId, m[1] as string, Number(m[2]));
  } catch (e) {
    return refuse(502, (e as Error).message.replace(/[\r\n]/g, ' '));
  }
  socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
  if (head.length) stream.write(head);
  stream.on('error', () => socket.destroy());
  socket.on('error', () => stream.destroy());
  socket.pipe(stream).pipe(socket);
  socket.on('close', () => stream.destroy());
  stream.on('close', () => socket.end());
}
