import type { IncomingMessage, ServerResponse } from 'node:http';

/** An unread request body up to this size is read and dropped before an error answer. */
const DRAIN_LIMIT = 8 * 1024 * 1024;

/**
 * E2B's error body: `{"code": <http status>, "message": "..."}`. If the request body was
 * not read to its end, the rest is read and dropped first (so that a client still
 * sending sees the answer rather than a reset; past DRAIN_LIMIT we stop reading) and the
 * connection is closed after the answer: a socket whose request was cut short is not
 * trusted with the next one.
 */
export function jsonError(res: ServerResponse, status: number, message: string, req?: IncomingMessage): void {
  if (res.headersSent) {
    res.destroy(new Error(message));
    return;
  }
  const body = JSON.stringify({ code: status, message });
  const send = (close: boolean) => {
    if (res.headersSent) return;
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
    };
    if (close) headers.connection = 'close';
    res.writeHead(status, headers).end(body);
  };
  if (!req || (req.readableEnded && req.readableFlowing !== false)) {
    send(false);
    return;
  }
  if (req.destroyed) {
    send(true);
    return;
  }
  req.unpipe();
  let drained = 0;
  req.on('data', (c: Buffer) => {
    drained += c.length;
    if (drained > DRAIN_LIMIT) {
      send(true);
      req.pause();
    }
  });
  req.once('end', () => send(true));
  req.once('error', () => send(true));
  req.resume();
}

export function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res
    .writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    .end(body);
}

/** Reads a small body (JSON requests) up to `limit` bytes. */
export function readBody(req: IncomingMessage, limit = 1024 * 1024): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error(`body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
