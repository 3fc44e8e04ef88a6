import { createReadStream, constants as fsc } from 'node:fs';
import { open, stat, statfs, unlink } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { basename, dirname } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip, createGzip } from 'node:zlib';
import { ENVD_ACCESS_TOKEN_HEADER, ENVD_METADATA_HEADER_PREFIX } from '@aiva/protocol';
import busboy from 'busboy';
import { checkFileAccess, SignatureError } from '../auth.js';
import type { Envd } from '../context.js';
import { ensureDirs } from '../fs/ensure-dirs.js';
import { InvalidPathError, resolveUserPath } from '../paths.js';
import type { GuestUser } from '../users.js';
import { json, jsonError } from './respond.js';

/** An error with the HTTP status to answer it with. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const isNoSpace = (e: unknown) => ['ENOSPC', 'EDQUOT'].includes((e as NodeJS.ErrnoException).code ?? '');

interface FileRequest {
  user: GuestUser;
  /** The `path` query parameter as sent (what signatures cover). */
  rawPath: string | undefined;
}

/** Authorizes a /files request and works out its user; answers and returns undefined on failure. */
function authorize(
  envd: Envd,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  operation: 'read' | 'write',
): FileRequest | undefined {
  const q = url.searchParams;
  const rawPath = q.get('path') ?? undefined;
  const username = q.get('username') ?? undefined;
  try {
    checkFileAccess({
      token: envd.state.accessToken,
      headerToken: req.headers[ENVD_ACCESS_TOKEN_HEADER] as string | undefined,
      signature: q.get('signature') ?? undefined,
      expiration: q.get('signature_expiration') ?? undefined,
      path: rawPath ?? '',
      username,
      operation,
    });
  } catch (e) {
    if (e instanceof SignatureError) {
      jsonError(res, 401, e.message, req);
      return undefined;
    }
    throw e;
  }
  const name = username || envd.state.defaultUser;
  try {
    return { user: envd.users.lookup(name), rawPath };
  } catch (e) {
    jsonError(res, 401, `error looking up user '${name}': ${(e as Error).message}`, req);
    return undefined;
  }
}

function resolve(path: string, user: GuestUser): string {
  try {
    return resolveUserPath(path, user);
  } catch (e) {
    if (e instanceof InvalidPathError)
      throw new HttpError(400, `error resolving path '${path}': ${e.message}`);
    throw e;
  }
}

/** Parses a single `bytes=` range against `size`; null if unsatisfiable, undefined if absent/ignored. */
function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return undefined; // several ranges or another unit: serve the whole file
  const [, a = '', b = ''] = m;
  let start: number;
  let end: number;
  if (a === '') {
    if (b === '') return null;
    const n = Number(b);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  }
  if (start >= size || end < start) return null;
  return { start, end };
}

/**
 * The response encoding for an Accept-Encoding header, as E2B's envd negotiates it:
 * the best-quality supported coding (gzip), identity when it ranks first or nothing
 * supported is asked for, an error when identity is refused and gzip is not accepted.
 * Note that fetch() sends "gzip, deflate" by itself, so SDK downloads come gzipped.
 */
export function acceptedEncoding(header: string | undefined): 'gzip' | 'identity' | Error {
  if (!header) return 'identity';
  const offers = header
    .split(',')
    .map((part) => {
      const [name = '', ...params] = part.split(';').map((x) => x.trim());
      const q = params.find((p) => p.toLowerCase().startsWith('q='));
      const quality = q ? Number(q.slice(2)) : 1;
      return { name: name.toLowerCase(), quality: Number.isNaN(quality) ? 1 : quality };
    })
    .filter((o) => o.name !== '')
    .sort((a, b) => b.quality - a.quality);
  const identityRefused = offers.some((o) => (o.name === 'identity' || o.name === '*') && o.quality === 0);
  for (const o of offers) {
    if (o.quality === 0) continue;
    if (o.name === 'identity') return 'identity';
    if (o.name === 'gzip') return 'gzip';
    if (o.name === '*') return identityRefused ? 'gzip' : 'identity';
  }
  return identityRefused ? new Error('no acceptable encoding found, supported: [gzip]') : 'identity';
}

/** GET /files: a file's bytes; Range (206) or gzip (Accept-Encoding) on request. */
export async function downloadFile(
  envd: Envd,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const auth = authorize(envd, req, res, url, 'read');
  if (!auth) return;
  try {
    const path = resolve(auth.rawPath ?? '', auth.user);
    const st = await stat(path).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR')
        throw new HttpError(404, `path '${path}' does not exist`);
      throw new HttpError(500, `error checking if path exists '${path}': ${e.message}`);
    });
    if (st.isDirectory()) throw new HttpError(400, `path '${path}' is a directory`);
    const file = await open(path, fsc.O_RDONLY).catch((e: Error) => {
      throw new HttpError(500, `error opening file '${path}': ${e.message}`);
    });
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': 'bytes',
      'last-modified': st.mtime.toUTCString(),
      vary: 'Accept-Encoding',
    };
    const range = parseRange(req.headers.range, st.size);
    const encoding = acceptedEncoding(req.headers['accept-encoding']);
    if (encoding instanceof Error) {
      await file.close();
      throw new HttpError(400, `error parsing Accept-Encoding: ${encoding.message}`);
    }
    // Ranges are served as they are (Accept-Encoding is advisory).
    const gzip = range === undefined && encoding === 'gzip';
    if (range === null) {
      await file.close();
      res.writeHead(416, { 'content-range': `bytes */${st.size}` }).end();
      return;
    }
    let body: Readable = createReadStream('', {
      fd: file,
      start: range?.start,
      end: range?.end,
      highWaterMark: 256 * 1024,
    });
    if (range) {
      headers['content-range'] = `bytes ${range.start}-${range.end}/${st.size}`;
      headers['content-length'] = range.end - range.start + 1;
      res.writeHead(206, headers);
    } else if (gzip) {
      headers['content-encoding'] = 'gzip';
      res.writeHead(200, headers);
      body = body.pipe(createGzip({ level: 1, chunkSize: 256 * 1024 }));
    } else {
      headers['content-length'] = st.size;
      res.writeHead(200, headers);
    }
    if (req.method === 'HEAD') {
      body.destroy();
      res.end();
      return;
    }
    // A client that goes away mid-download ends the pipeline (and closes the file).
    await pipeline(body, res).catch(() => undefined);
  } catch (e) {
    if (e instanceof HttpError) jsonError(res, e.status, e.message, req);
    else throw e;
  }
}

/** Metadata from `X-Metadata-<Key>` headers: keys lowercased (as E2B's envd), first value wins. */
function metadataHeaders(req: IncomingMessage): Record<string, string> {
  const md: Record<string, string> = {};
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] ?? '').toLowerCase();
    const key = name.slice(ENVD_METADATA_HEADER_PREFIX.length);
    if (name.startsWith(ENVD_METADATA_HEADER_PREFIX) && key.length > 0 && !(key in md))
      md[key] = raw[i + 1] ?? '';
  }
  return md;
}

/**
 * Writes one uploaded file as root, then gives it to the user: parents are created
 * (owned by the user), an existing file is truncated, a directory refused (400), a full
 * disk answered with 507 and the partial file removed. True if the file existed.
 */
async function writeFile(
  path: string,
  body: Readable,
  user: GuestUser,
  declaredBytes?: number,
): Promise<boolean> {
  try {
    await ensureDirs(dirname(path), user.uid, user.gid);
  } catch (e) {
    if (isNoSpace(e)) throw new HttpError(507, 'not enough disk space available');
    throw new HttpError(500, `error ensuring directories: ${(e as Error).message}`);
  }
  const existing = await stat(path).catch(() => undefined);
  if (existing?.isDirectory()) throw new HttpError(400, `path is a directory: ${path}`);
  if (declaredBytes !== undefined) {
    const fs = await statfs(dirname(path)).catch(() => undefined);
    const free = fs ? Number(fs.bavail) * Number(fs.bsize) + (existing?.size ?? 0) : Number.POSITIVE_INFINITY;
    if (declaredBytes > free) {
      throw new HttpError(507, `attempted to write ${declaredBytes} bytes: not enough disk space available`);
    }
  }
  const file = await open(path, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC, 0o666).catch((e) => {
    if (isNoSpace(e)) throw new HttpError(507, `not enough inodes available: ${(e as Error).message}`);
    throw new HttpError(500, `error opening file: ${(e as Error).message}`);
  });
  try {
    await file.chown(user.uid, user.gid);
  } catch (e) {
    await file.close();
    throw new HttpError(500, `error changing file ownership: ${(e as Error).message}`);
  }
  try {
    // The stream owns the handle from here on and closes it, whatever happens.
    await pipeline(body, file.createWriteStream());
  } catch (e) {
    await unlink(path).catch(() => undefined);
    if (e instanceof HttpError) throw e;
    if (isNoSpace(e)) throw new HttpError(507, 'not enough disk space available');
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
      throw new HttpError(400, `error decompressing request body: ${(e as Error).message}`);
    }
    throw new HttpError(400, `error writing file: ${(e as Error).message}`);
  }
  return existing !== undefined;
}

interface Written {
  path: string;
  name: string;
  type: 'file';
  metadata?: Record<string, string>;
  /** It overwrote a file (whose metadata must not outlive its content). */
  replaced?: boolean;
}

/** POST /files: multipart parts named `file`, or one application/octet-stream body. */
export async function uploadFiles(
  envd: Envd,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
): Promise<void> {
  const auth = authorize(envd, req, res, url, 'write');
  if (!auth) return;
  const { user, rawPath } = auth;
  try {
    const encoding = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    // The body goes through a stream of its own, so that a failed write destroys that one
    // and not the request (whose connection still has to carry the error answer).
    let body: Readable;
    if (encoding === 'gzip') body = req.pipe(createGunzip());
    else if (encoding === 'identity' || encoding === '') body = req.pipe(new PassThrough());
    else throw new HttpError(400, `unsupported Content-Encoding: ${encoding}`);
    // gunzip errors surface where the body is consumed.
    body.on('error', () => {});
    // pipe() does not pass on a client that went away mid-upload: fail the body, so that
    // the write stops, its file is closed and the partial file removed.
    req.once('close', () => {
      if (!req.complete)
        body.destroy(new HttpError(400, 'the client closed the connection before the upload was complete'));
    });
    const contentType = String(req.headers['content-type'] ?? '');
    const mediaType = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
    const md = metadataHeaders(req);
    const declared =
      encoding === 'identity' && req.headers['content-length']
        ? Number(req.headers['content-length'])
        : undefined;
    const written: Written[] = [];

    if (mediaType === 'application/octet-stream') {
      if (rawPath === undefined)
        throw new HttpError(400, 'path query parameter is required for raw body upload');
      const path = resolve(rawPath, user);
      const replaced = await writeFile(path, body, user, declared);
      written.push({ path, name: basename(path), type: 'file', replaced });
    } else if (mediaType.startsWith('multipart/')) {
      await new Promise<void>((done, fail) => {
        let bb: busboy.Busboy;
        try {
          bb = busboy({ headers: req.headers, preservePath: true });
        } catch (e) {
          fail(new HttpError(400, `error parsing multipart form: ${(e as Error).message}`));
          return;
        }
        let work = Promise.resolve();
        let failed = false;
        const inFlight = new Set<PassThrough>();
        const stop = (e: unknown) => {
          if (failed) return;
          failed = true;
          body.unpipe(bb);
          // A part being written stops too (its partial file is removed).
          for (const part of inFlight) part.destroy(e instanceof Error ? e : new Error(String(e)));
          fail(e);
        };
        bb.on('file', (field, stream, info) => {
          if (field !== 'file' || failed) {
            stream.resume();
            return;
          }
          // Parts are written one after another, in order.
          const part = new PassThrough();
          inFlight.add(part);
          part.once('close', () => inFlight.delete(part));
          stream.pipe(part);
          stream.on('error', (e) => part.destroy(e));
          work = work.then(async () => {
            if (failed) {
              part.resume();
              return;
            }
            try {
              const target = rawPath ?? info.filename;
              if (!target) throw new HttpError(400, 'a file part has no file name and no path was given');
              const path = resolve(target, user);
              if (written.some((w) => w.path === path)) {
                throw new HttpError(
                  400,
                  `you cannot upload multiple files to the same path '${path}' in one upload request, only the first specified file was uploaded`,
                );
              }
              const replaced = await writeFile(path, part, user);
              written.push({ path, name: basename(path), type: 'file', replaced });
            } catch (e) {
              part.resume();
              stop(e);
            }
          });
        });
        bb.on('error', (e) => stop(new HttpError(400, `error reading form: ${(e as Error).message}`)));
        bb.on('close', () => {
          work.then(() => {
            if (!failed) done();
          });
        });
        body.on('error', (e) => stop(new HttpError(400, `error reading request body: ${e.message}`)));
        body.pipe(bb);
      });
    } else {
      throw new HttpError(
        400,
        `unsupported content type: ${contentType}, expected multipart/form-data or application/octet-stream`,
      );
    }

    // A write replaces the file's metadata too, as E2B's envd: an overwrite without
    // metadata leaves none of the old file's.
    const hasMetadata = Object.keys(md).length > 0;
    for (const w of written) {
      if (hasMetadata || w.replaced)
        await envd.metadata.replace(w.path, md).catch((e: Error) => {
          throw new HttpError(isNoSpace(e) ? 507 : 500, e.message);
        });
      if (hasMetadata) w.metadata = md;
    }
    json(
      res,
      200,
      written.map(({ replaced: _, ...w }) => w),
    );
  } catch (e) {
    if (e instanceof HttpError) jsonError(res, e.status, e.message, req);
    else jsonError(res, 500, (e as Error).message, req);
  }
}
