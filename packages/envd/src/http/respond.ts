import type { IncomingMessage, ServerResponse } from 'node:http';

/** E2B's error body: `{"code": <http status>, "message": "..."}`. */
export function jsonError(res: ServerResponse, status: number, message: string, req?: IncomingMessage): void {
  if (res.headersSent) {
    res.destroy(new Error(message));
    return;
  }
  const body = JSON.stringify({ code: status, message });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  // A body we did not read would otherwise be parsed as the next request.
  if (req && !req.readableEnded) headers.connection = 'close';
  res.writeHead(status, headers).end(body);
  req?.resume();
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
