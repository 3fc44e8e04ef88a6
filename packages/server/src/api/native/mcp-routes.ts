import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { FastifyInstance } from 'fastify';
import { createAivaMcpServer } from '../../mcp/aiva-mcp-server.js';
import { apiKeyOf } from '../authenticate.js';
import { ApiError } from '../errors.js';

export interface McpRouteOptions {
  /** Where this server's own API is reached from inside it (set once it listens). */
  selfUrl: () => string | undefined;
  domain?: string;
  version: string;
}

/**
 * `POST /mcp`: aiva as an MCP server over Streamable HTTP, stateless (each request has a
 * server and transport of its own, so any replica answers any request), with the tools of
 * `mcp/aiva-mcp-server.ts` acting with the caller's key. GET and DELETE (a stream or a
 * session of a stateful server) are 405.
 */
export function registerMcpRoutes(app: FastifyInstance, o: McpRouteOptions): void {
  app.post('/mcp', async (request, reply) => {
    const apiUrl = o.selfUrl();
    if (!apiUrl) throw new ApiError(503, 'the server is still starting');
    // The tools call the API with the caller's key: a console session has none to lend.
    const apiKey = apiKeyOf(request);
    if (!apiKey) throw new ApiError(401, 'MCP needs an API key (X-API-KEY or Authorization: Bearer)');
    const server = createAivaMcpServer({ apiUrl, apiKey, domain: o.domain }, o.version);
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    reply.hijack();
    reply.raw.on('close', () => {
      void transport.close();
      void server.close();
    });
    await server.connect(transport);
    await transport.handleRequest(request.raw, reply.raw, request.body);
  });
  const notHere = async () => {
    throw new ApiError(405, 'aiva’s MCP endpoint is stateless: POST JSON-RPC messages to /mcp');
  };
  app.get('/mcp', notHere);
  app.delete('/mcp', notHere);
}
