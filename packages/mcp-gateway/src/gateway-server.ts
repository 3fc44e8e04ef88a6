import { timingSafeEqual } from 'node:crypto';
import {
  createServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { toolTable, type Upstream } from './upstreams.js';

export const GATEWAY_PORT = 50005;
const MAX_BODY = 16 * 1024 * 1024;

function sameToken(given: string, token: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) req.destroy(new Error('body too large'));
      else chunks.push(c);
    });
    req.once('end', () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      } catch {
        reject(new Error('the body is not JSON'));
      }
    });
    req.once('error', reject);
  });
}

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

/** One MCP server (low-level SDK `Server`) over the gateway's upstreams: their tools together. */
function mcpServer(upstreams: Upstream[]): Server {
  const server = new Server({ name: 'aiva-mcp-gateway', version: '0.1.0' }, { capabilities: { tools: {} } });
  server.setRequestHandler(ListToolsRequestSchema, async () => ({
    tools: [...toolTable(upstreams)].map(([name, { tool }]) => ({ ...tool, name })),
  }));
  server.setRequestHandler(CallToolRequestSchema, async (request, extra) => {
    const target = toolTable(upstreams).get(request.params.name);
    if (!target) {
      const down = upstreams.filter((u) => u.state !== 'ready').map((u) => `${u.spec.name} (${u.state})`);
      return {
        isError: true,
        content: [
          {
            type: 'text',
            text: `no tool "${request.params.name}"${down.length ? `; servers not running: ${down.join(', ')}` : ''}`,
          },
        ],
      };
    }
    const token = request.params._meta?.progressToken;
    return target.upstream.call(target.tool.name, request.params.arguments, {
      signal: extra.signal,
      onprogress:
        token === undefined
          ? undefined
          : (p) =>
              void extra
                .sendNotification({
                  method: 'notifications/progress',
                  params: { ...p, progressToken: token },
                })
                .catch(() => {}),
    });
  });
  return server;
}

/**
 * The gateway's HTTP side on `port`: `/mcp` is MCP's Streamable HTTP, stateless (a server
 * and transport per request over the shared upstreams), for a bearer `token`; `/health`
 * says whether every server has settled (ready, failed or exited) and names each's state.
 */
export function serveGateway(upstreams: Upstream[], token: string, port = GATEWAY_PORT): Promise<HttpServer> {
  const http = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://gateway').pathname;
      const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1] ?? '';
      if (path === '/health') {
        const settled = upstreams.every((u) => u.state !== 'starting');
        return answer(res, settled ? 200 : 503, {
          ready: settled,
          servers: sameToken(bearer, token) ? upstreams.map((u) => u.status()) : undefined,
        });
      }
      if (path !== '/mcp') return answer(res, 404, { error: `no route ${path}; MCP is at /mcp` });
      if (!sameToken(bearer, token)) return answer(res, 401, { error: 'a valid bearer token is required' });
      if (req.method !== 'POST')
        return answer(res, 405, { error: 'the gateway is stateless: POST JSON-RPC messages to /mcp' });
      let body: unknown;
      try {
        body = await readJson(req);
      } catch (e) {
        return answer(res, 400, { error: (e as Error).message });
      }
      const server = mcpServer(upstreams);
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
      res.on('close', () => {
        void transport.close();
        void server.close();
      });
      await server.connect(transport);
      await transport.handleRequest(req, res, body);
    })().catch((e: Error) => {
      if (!res.headersSent) answer(res, 500, { error: e.message });
      else res.destroy();
    });
  });
  return new Promise((resolve, reject) => {
    http.once('error', reject);
    http.listen(port, '0.0.0.0', () => resolve(http));
  });
}
