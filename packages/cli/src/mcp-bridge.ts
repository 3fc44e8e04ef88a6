import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  type InitializeResult,
  isInitializeRequest,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
} from '@modelcontextprotocol/sdk/types.js';
import type { Sandbox } from 'e2b';

/** The port of E2B's MCP gateway in a sandbox made with the `mcp` option. */
export const MCP_GATEWAY_PORT = 50005;

/** JSON-RPC's "internal error": what the host gets for a request the gateway could not take. */
const INTERNAL_ERROR = -32603;

/**
 * The gateway's token: the one the SDK gave it at create (`getMcpToken()` reads the file
 * the gateway keeps); a sandbox without a gateway is an error that says so.
 */
export async function gatewayToken(sandbox: Sandbox, label: string): Promise<string> {
  const token = await sandbox.getMcpToken().catch(() => undefined);
  if (!token)
    throw new Error(
      `${label} runs no MCP gateway (make it with the mcp option of Sandbox.create, or aiva init --mcp)`,
    );
  return token.trim();
}

/**
 * Serves, on this process's stdin and stdout, the MCP server a sandbox's gateway serves:
 * the official MCP SDK's stdio server transport on one side, its Streamable HTTP client
 * transport on the other (to the gateway through aiva's proxy at `<sandboxUrl>/mcp`, with
 * E2B's sandbox headers and the gateway's token), JSON-RPC messages forwarded as they are
 * both ways. Resolves when either side closes (the host closing stdin ends the session).
 */
export async function bridgeStdioToGateway(target: {
  sandboxUrl: string;
  sandboxId: string;
  token: string;
}): Promise<void> {
  const remote = new StreamableHTTPClientTransport(new URL('/mcp', target.sandboxUrl), {
    requestInit: {
      headers: {
        'e2b-sandbox-id': target.sandboxId,
        'e2b-sandbox-port': String(MCP_GATEWAY_PORT),
        authorization: `Bearer ${target.token}`,
      },
    },
  });
  const local = new StdioServerTransport();
  let finish: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    finish = resolve;
  });
  const initializeIds = new Set<string | number>();
  // Until the session exists (the answer to initialize gives its id), what follows waits.
  let session: Promise<unknown> = Promise.resolve();

  const fail = (message: JSONRPCMessage, e: unknown) => {
    const text = e instanceof Error ? e.message : String(e);
    process.stderr.write(`aiva mcp connect: ${text}\n`);
    if (isJSONRPCRequest(message))
      void local.send({
        jsonrpc: '2.0',
        id: message.id,
        error: { code: INTERNAL_ERROR, message: `the sandbox's MCP gateway: ${text}` },
      });
  };

  local.onmessage = (message) => {
    if (isInitializeRequest(message) && isJSONRPCRequest(message)) {
      initializeIds.add(message.id);
      session = remote.send(message).catch((e: unknown) => fail(message, e));
      return;
    }
    // Sent without waiting for each other: a long tool call does not hold up the next.
    void session.then(() => remote.send(message)).catch((e: unknown) => fail(message, e));
  };
  remote.onmessage = (message) => {
    if (isJSONRPCResultResponse(message) && initializeIds.delete(message.id)) {
      const version = (message.result as InitializeResult).protocolVersion;
      if (version) remote.setProtocolVersion(version);
    }
    void local.send(message);
  };
  // Errors of a request are answered to the host (above); others (the server's event
  // stream) are said on stderr, which hosts show as the server's log.
  remote.onerror = (e) => process.stderr.write(`aiva mcp connect: ${e.message}\n`);
  local.onerror = (e) => process.stderr.write(`aiva mcp connect: ${e.message}\n`);
  remote.onclose = () => finish();
  local.onclose = () => finish();
  process.stdin.once('end', () => finish());

  await remote.start();
  await local.start();
  await closed;
  // End the gateway's session, then both sides.
  if (remote.sessionId) await remote.terminateSession().catch(() => undefined);
  await remote.close().catch(() => undefined);
  await local.close().catch(() => undefined);
}
