// The server ↔ node contract (seed 003): the commands a server gives a node, their
// results and error codes, what a node reports of itself, and the sandbox ids the server
// makes. Both the node in `aiva up`'s process and a node agent speak it.

export * from './agent-api.js';
export * from './commands.js';
export * from './contract.js';
export * from './ids.js';
export * from './node-snapshot.js';
export * from './sandbox-types.js';
export * from './tunnel.js';
