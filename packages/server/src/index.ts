export { hashApiKey } from './auth/api-keys.js';
export { isScope, SCOPES, type Scope } from './auth/scopes.js';
export { openDatabase } from './db/database.js';
export { answerQuery, type DomainDns, parseListen, startDomainDns } from './domain-dns.js';
export { createAivaMcpServer, type McpApiTarget } from './mcp/aiva-mcp-server.js';
export { InProcessNodeLink } from './nodes/in-process-node-link.js';
export { NodeClient } from './nodes/node-client.js';
export type { NodeLink } from './nodes/node-link.js';
export { Nodes } from './nodes/nodes.js';
export { type RunningServer, type ServerConfig, startServer } from './server.js';
export { AuditLog } from './services/audit-log.js';
export { uploadedFile } from './services/build-files.js';
export type { EnvironmentView } from './services/environment-service.js';
export type { SandboxLimits } from './services/live-sandboxes.js';
export {
  hashNodeToken,
  NODE_TOKEN_PATTERN,
  type NodeTokenCheck,
  type NodeTokenInfo,
  NodeTokenService,
} from './services/node-token-service.js';
export type { TeamQuota } from './services/team-quotas.js';
export { type NewKey, type TeamInfo, TeamService } from './services/team-service.js';
export { type PriceTable, parsePriceTable, readPriceTable } from './services/usage-prices.js';
export type { UsageReport } from './services/usage-report.js';
