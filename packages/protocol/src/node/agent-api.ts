import { type Static, Type } from 'typebox';
import { NodeCommandOutcomeSchema } from './commands.js';
import { BuildLogLineSchema } from './sandbox-types.js';

// The HTTP routes a node agent calls on the server (`aiva node join`). The node opens
// every connection, so a node behind NAT works: it joins once with a join token, then
// with the credential it got pushes snapshots of itself, long-polls for commands and
// posts their outcomes. Request bodies may be gzip-encoded (`content-encoding: gzip`).

export const NODE_ROUTES = {
  join: '/v1/node/join',
  snapshot: '/v1/node/snapshot',
  commands: '/v1/node/commands',
  results: '/v1/node/results',
  progress: '/v1/node/progress',
  /** `GET …/:team/:hash`: an uploaded build file a command names. */
  files: '/v1/node/files',
  /**
   * `PUT …/:hash`: a layer of the node's store as a tar stream (gzip optional), its sha256
   * in ARTEFACT_DIGEST_HEADER; `GET …/:hash`: a layer of the server's store, the same way.
   */
  layers: '/v1/node/layers',
  /** `PUT …/:name`, `GET …/:name` (since 1.2): a checkpoint, as a tar, the way of a layer. */
  checkpoints: '/v1/node/checkpoints',
  /** `GET` with `Upgrade`: the tunnel that carries sandbox traffic. */
  tunnel: '/v1/node/tunnel',
} as const;

/** The header with a layer's or checkpoint's tar digest, `sha256:<hex>` of the tar (before any content-encoding). */
export const ARTEFACT_DIGEST_HEADER = 'aiva-digest';

/** A node's name: what `aiva node ls` shows and labels select on. */
export const NODE_NAME_PATTERN = '^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$';

/** `POST /v1/node/join`: a join token for a node credential. */
export const NodeJoinRequestSchema = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 200 }),
  name: Type.String({ pattern: NODE_NAME_PATTERN }),
  labels: Type.Record(Type.String(), Type.String()),
  /** The contract version the node speaks (`1.0`). */
  protocol: Type.String(),
  aivaVersion: Type.String(),
  /** `host:port` where the server may reach the node's tunnel listener directly, if the operator says so. */
  directAddress: Type.Optional(Type.String()),
});
export type NodeJoinRequest = Static<typeof NodeJoinRequestSchema>;

export const NodeJoinResponseSchema = Type.Object({
  nodeId: Type.String(),
  /** The node's credential from now on (`authorization: Bearer …`): shown once, stored hashed. */
  credential: Type.String(),
  /** The key of the tickets that bind each tunnel stream to a sandbox and port (base64). */
  tunnelKey: Type.String(),
  protocol: Type.String(),
  heartbeatSeconds: Type.Integer({ minimum: 1 }),
  commandWaitSeconds: Type.Integer({ minimum: 1 }),
});
export type NodeJoinResponse = Static<typeof NodeJoinResponseSchema>;

/** `GET /v1/node/commands?wait=S`: the commands for this node, waiting up to S seconds for one. */
export const NodeCommandsResponseSchema = Type.Object({ commands: Type.Array(Type.Unknown()) });

/** `POST /v1/node/results`: outcomes, each applied once however often it is posted. */
export const NodeResultsRequestSchema = Type.Object({ outcomes: Type.Array(NodeCommandOutcomeSchema) });
export const NodeResultsResponseSchema = Type.Object({
  verdicts: Type.Array(
    Type.Object({
      commandId: Type.String(),
      /** `duplicate`: applied before; `rejected`: not this node's command (logged by the server). */
      verdict: Type.Enum(['accepted', 'duplicate', 'rejected']),
    }),
  ),
});
export type NodeResultsResponse = Static<typeof NodeResultsResponseSchema>;

/** `POST /v1/node/progress`: log lines of a running command (a template build). */
export const NodeProgressRequestSchema = Type.Object({
  commandId: Type.String(),
  lines: Type.Array(BuildLogLineSchema),
});
