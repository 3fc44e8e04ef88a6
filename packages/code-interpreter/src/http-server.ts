import {
  createServer,
  get as httpGet,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { type CodeContext, type ContextManager, RequestError } from './code-context.js';
import { runInContext } from './execution.js';
import { ndjson } from './output-lines.js';
import { envVarsProblem } from './run-env.js';

/** envd's port inside the sandbox (its `GET /envs` has the sandbox's env vars). */
const ENVD_PORT = 49983;
/** How much output may wait for a slow client before its kernel is held (stopped). */
const HOLD_BYTES = 4 * 1024 * 1024;
/** The largest request body (code) accepted. */
const MAX_BODY = 64 * 1024 * 1024;

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new RequestError(413, `the request body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new RequestError(400, 'the request body is not JSON');
  }
  if (!body || typeof body !== 'object' || Array.isArray(body))
    throw new RequestError(400, 'the request body is not a JSON object');
  return body as Record<string, unknown>;
}

function optionalString(body: Record<string, unknown>, key: string): string | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new RequestError(400, `"${key}" must be a string`);
  return v;
}

function envVarsOf(body: Record<string, unknown>): Record<string, string> {
  const v = body.env_vars;
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string'))
    throw new RequestError(400, '"env_vars" must be an object of strings');
  return v as Record<string, string>;
}

/**
 * A reason phrase for `message`: the e2b SDK shows the status text (not the body) of a
 * 4xx, so the reason must say what was wrong. Only visible ASCII and spaces are allowed.
 */
const reason = (message: string) => message.replace(/[^\x20-\x7e]/g, '?').slice(0, 200);

function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, reason(message), { 'content-type': 'text/plain; charset=utf-8' }).end(message);
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
}

/**
 * The sandbox's env vars from envd, with the client's access token (if envd wants one).
 * Through `node:http`, which the server has loaded already: `fetch` loads and compiles
 * undici on its first use, seconds in a microVM under TCG just restored from a snapshot.
 */
function sandboxEnvs(token: string | undefined): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    const req = httpGet(
      {
        host: '127.0.0.1',
        port: ENVD_PORT,
        path: '/envs',
        headers: token ? { 'X-Access-Token': token } : {},
        timeout: 10_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('error', reject);
        res.on('end', () => {
          if (res.statusCode !== 200)
            return reject(new Error(`envd's GET /envs answered ${res.statusCode}: ${body}`));
          try {
            resolve(JSON.parse(body) as Record<string, string>);
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error("envd's GET /envs did not answer within 10 s")));
    req.on('error', reject);
  });
}

async function execute(contexts: ContextManager, req: IncomingMessage, res: ServerResponse) {
  const body = await readJson(req);
  const code = body.code;
  if (typeof code !== 'string') throw new RequestError(400, '"code" must be a string');
  const contextId = optionalString(body, 'context_id');
  const language = optionalString(body, 'language');
  const envVars = envVarsOf(body);
  if (contextId && language)
    throw new RequestError(400, 'Only one of context_id or language can be provided');
  let ctx: CodeContext;
  if (contextId) ctx = contexts.get(contextId);
  else {
    try {
      ctx = await contexts.defaultFor(language);
    } catch (e) {
      if (e instanceof RequestError) throw e;
      throw new RequestError(500, `Failed to create context: ${(e as Error).message}`);
    }
  }
  const envProblem = envVarsProblem(ctx.info.language, envVars);
  if (envProblem) throw new RequestError(400, envProblem);
  // Headers go out now, before the run waits its turn: the SDK's request timeout covers
  // only the time until they arrive.
  res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
  res.flushHeaders();
  const gone = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) gone.abort();
  });
  const token = req.headers['x-access-token'];
  await runInContext(ctx, {
    code,
    envVars,
    sandboxEnvs: () => sandboxEnvs(typeof token === 'string' ? token : undefined),
    signal: gone.signal,
    // Up to HOLD_BYTES may wait for the client before the kernel is held.
    write: (line) => {
      if (res.destroyed) return true;
      res.write(ndjson(line));
      return res.writableLength < HOLD_BYTES;
    },
    drained: () =>
      new Promise<void>((resolve) => {
        if (res.destroyed || res.writableLength === 0) return resolve();
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      }),
  });
  if (!res.destroyed) res.end(ndjson({ type: 'end_of_execution' }));
}

async function route(contexts: ContextManager, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The SDK may add `?source=…`: only the path routes.
  const path = new URL(req.url ?? '/', 'http://localhost').pathname;
  const method = req.method ?? 'GET';
  if (path === '/health' && method === 'GET') return sendJson(res, 200, 'OK');
  if (path === '/execute' && method === 'POST') return execute(contexts, req, res);
  if (path === '/contexts' && method === 'GET') return sendJson(res, 200, contexts.list());
  if (path === '/contexts' && method === 'POST') {
    const body = await readJson(req);
    const ctx = await contexts.create(optionalString(body, 'language'), optionalString(body, 'cwd'));
    return sendJson(res, 200, ctx.info);
  }
  const m = /^\/contexts\/([^/]+)(\/restart)?$/.exec(path);
  if (m?.[1]) {
    const id = decodeURIComponent(m[1]);
    if (m[2] && method === 'POST') {
      await contexts.get(id).restart();
      return sendJson(res, 200, null);
    }
    if (!m[2] && method === 'DELETE') {
      await contexts.remove(id);
      return sendJson(res, 200, null);
    }
  }
  sendError(res, 404, `no route for ${method} ${path}`);
}

/** The code-interpreter's HTTP server (E2B's routes), not yet listening. */
export function codeInterpreterServer(contexts: ContextManager): Server {
  return createServer((req, res) => {
    route(contexts, req, res).catch((e: Error) => {
      if (e instanceof RequestError) return sendError(res, e.status, e.message);
      process.stderr.write(`code-interpreter: ${req.method} ${req.url}: ${e.stack ?? e.message}\n`);
      sendError(res, 500, e.message);
    });
  });
}
