#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { registerAuditCommand } from './commands/audit.js';
import { registerDataCommands } from './commands/data.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerEnvironmentCommands } from './commands/environment.js';
import { registerImageCommands } from './commands/image.js';
import { registerKeyCommands } from './commands/keys.js';
import { registerMcpCommand } from './commands/mcp.js';
import { registerNodeCommands } from './commands/node.js';
import { registerSandboxCommands } from './commands/sandbox.js';
import { registerServerCommand } from './commands/server.js';
import { registerTeamCommands } from './commands/teams.js';
import { registerTemplateCommands } from './commands/template.js';
import { registerTlsCommands } from './commands/tls.js';
import { registerUpCommand } from './commands/up.js';
import { registerUsageCommand } from './commands/usage.js';

const program = new Command('aiva')
  .description('sandboxes for AI agents: microVMs and containers behind an E2B-compatible API')
  .showHelpAfterError()
  .exitOverride();

registerUpCommand(program);
registerServerCommand(program);
registerKeyCommands(program);
registerAuditCommand(program);
registerTeamCommands(program);
registerNodeCommands(program);
registerImageCommands(program);
registerSandboxCommands(program);
registerTemplateCommands(program);
registerTlsCommands(program);
registerUsageCommand(program);
registerMcpCommand(program);
registerDataCommands(program);
registerDoctorCommand(program);
registerEnvironmentCommands(program);
// The program's options go before the command, so that `aiva sandbox run` can pass the
// options after its command to it. Set after the commands are made: they would inherit it.
program.enablePositionalOptions();

try {
  await program.parseAsync(process.argv);
} catch (e) {
  if (e instanceof CommanderError) process.exit(e.exitCode);
  console.error(`aiva: ${(e as Error).message}`);
  process.exit(process.exitCode && process.exitCode !== 0 ? process.exitCode : 1);
}
