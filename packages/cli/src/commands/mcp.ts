import { createAivaMcpServer } from '@aiva/server';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Command } from 'commander';
import { apiTarget } from '../api-client.js';
import { connectEnvironment, sdkOptions } from '../environment-target.js';
import { bridgeStdioToGateway, gatewayToken } from '../mcp-bridge.js';
import { aivaVersion } from '../option-parsers.js';

/**
 * `aiva mcp`: aiva as an MCP server on stdio, for agent hosts that spawn their servers.
 * Its tools call the running server's API (E2B_API_URL and E2B_API_KEY, else what `aiva
 * up` saved); stdout carries only MCP's messages.
 */
export function registerMcpCommand(program: Command): void {
  const mcp = program
    .command('mcp')
    .description(
      'serve aiva as an MCP server on stdio (sandboxes, commands, files, ports as tools; logs as resources)',
    )
    .action(async () => {
      const { apiUrl, apiKey } = await apiTarget();
      const server = createAivaMcpServer(
        { apiUrl, apiKey, domain: process.env.E2B_DOMAIN },
        await aivaVersion(),
      );
      const transport = new StdioServerTransport();
      // The host ends us by closing stdin: close the server so the process can exit.
      process.stdin.once('end', () => void server.close());
      await server.connect(transport);
    });
  mcp
    .command('connect')
    .description(
      'serve on stdio the MCP server an environment or sandbox runs behind its gateway (made with the mcp option), for hosts that spawn stdio servers',
    )
    .argument('<name|sandbox-id>', 'an environment name (aiva init --mcp) or a running sandbox id')
    .action(async (target: string) => {
      const { sandbox, label } = await connectEnvironment(target);
      const token = await gatewayToken(sandbox, label);
      const { sandboxUrl } = await sdkOptions();
      await bridgeStdioToGateway({ sandboxUrl, sandboxId: sandbox.sandboxId, token });
    });
}
