import { createAivaMcpServer } from '@aiva/server';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import type { Command } from 'commander';
import { apiTarget } from '../api-client.js';
import { aivaVersion } from '../option-parsers.js';

/**
 * `aiva mcp`: aiva as an MCP server on stdio, for agent hosts that spawn their servers.
 * Its tools call the running server's API (E2B_API_URL and E2B_API_KEY, else what `aiva
 * up` saved); stdout carries only MCP's messages.
 */
export function registerMcpCommand(program: Command): void {
  program
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
}
