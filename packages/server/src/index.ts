export { hashApiKey } from './auth/api-keys.js';
export { openDatabase } from './db/database.js';
export { answerQuery, type DomainDns, parseListen, startDomainDns } from './domain-dns.js';
export { LocalSandboxNode } from './nodes/local-sandbox-node.js';
export type { SandboxNode } from './nodes/sandbox-node.js';
export { type RunningServer, type ServerConfig, startServer } from './server.js';
export type { SandboxLimits } from './services/live-sandboxes.js';
export { TeamService } from './services/team-service.js';
