/** The template E2B's SDK starts for `Sandbox.create({ mcp })` when no template is named. */
export const MCP_GATEWAY_TEMPLATE = 'mcp-gateway';

/** The gateway's name for the one server `mcpGatewayConfigFor` configures. */
export const SINGLE_SERVER_NAME = 'main';

/** One custom server of the gateway's config: a command `/bin/sh -c` runs, speaking MCP on stdio. */
export interface CustomMcpServer {
  runCmd: string;
  envs?: Record<string, string>;
  initTimeoutSeconds?: number;
}

/**
 * The `mcp` option of `Sandbox.create` (the gateway's config, see packages/mcp-gateway's
 * gateway-config.ts) that runs `command` — one stdio MCP server, e.g. `npx -y
 * @modelcontextprotocol/server-everything` or `python3 /app/server.py` — behind the
 * sandbox's gateway on port 50005, where `aiva mcp connect` reaches it. For `aiva init
 * <name> --mcp '<command>'`: `Sandbox.create({ template: MCP_GATEWAY_TEMPLATE (or one
 * built on it), mcp: mcpGatewayConfigFor(command), metadata: { 'aiva.environment': name } })`.
 */
export function mcpGatewayConfigFor(
  command: string,
  options: { envs?: Record<string, string>; initTimeoutSeconds?: number } = {},
): Record<string, CustomMcpServer> {
  if (command.trim() === '') throw new Error('the MCP server command is empty');
  if (command.includes('\0')) throw new Error('the MCP server command has a NUL character');
  const server: CustomMcpServer = { runCmd: command };
  if (options.envs && Object.keys(options.envs).length > 0) server.envs = options.envs;
  if (options.initTimeoutSeconds !== undefined) server.initTimeoutSeconds = options.initTimeoutSeconds;
  return { [SINGLE_SERVER_NAME]: server };
}
