import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { NodeFailureSchema } from './contract.js';
import {
  BuildRequestSchema,
  BuildResultSchema,
  NetworkPolicySchema,
  NodeCheckpointSchema,
  NodeSandboxSchema,
  SandboxUsageSchema,
  StringMap,
  TemplateDefinitionSchema,
  VolumeMountSchema,
} from './sandbox-types.js';

// The commands a server gives a node, each with the schema of its payload and of the
// data of its result. A command has a server-made id: a node that is given the same id
// twice applies it once and answers both with the same result.

const sandboxId = Type.String({ pattern: '^[a-z0-9]{1,40}$' });
/** A checkpoint's name (a snapshot's id, a fork's `fork-<id>`). */
export const CHECKPOINT_NAME_PATTERN = '^[a-z0-9][a-z0-9_-]{0,99}$';
const checkpointName = Type.String({ pattern: CHECKPOINT_NAME_PATTERN });
const checkpointNames = Type.Optional(Type.Array(checkpointName, { minItems: 1, maxItems: 16 }));
const empty = Type.Object({});
/** A layer of the image store, by its content address. */
export const LAYER_HASH_PATTERN = '^[a-f0-9]{16,128}$';
const layerHashes = Type.Array(Type.String({ pattern: LAYER_HASH_PATTERN }), { maxItems: 256 });
/**
 * A recipe layer the node lacks is built there (true), or answered as MISSING_ARTEFACT
 * (`details.layers`, `details.buildable`) so that the server can send it from another
 * node first (absent: the node's choice — a node agent asks, `aiva up`'s node builds).
 */
const buildLayers = Type.Optional(Type.Boolean());

export const NODE_COMMANDS = {
  /** Makes a sandbox with the server's id; answers once its envd answers. */
  'sandbox.create': {
    payload: Type.Object({
      sandboxId,
      /** A recipe template's name (`base`), or a built template's definition. */
      template: Type.Union([Type.String(), TemplateDefinitionSchema]),
      envVars: Type.Optional(StringMap),
      /** envd's access token for the sandbox. */
      accessToken: Type.String(),
      network: Type.Optional(NetworkPolicySchema),
      /** Start from this checkpoint instead of from `template`. */
      fromCheckpoint: Type.Optional(checkpointName),
      buildLayers,
      /** Volumes of this node (`<home>/volumes/<id>`) bound into the sandbox at `path` (1.3). */
      volumes: Type.Optional(Type.Array(VolumeMountSchema, { maxItems: 16 })),
      /** Sizes other than the template's (a named environment's); sent only when asked for. */
      vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64 })),
      memoryMiB: Type.Optional(Type.Integer({ minimum: 128, maximum: 1024 * 1024 })),
      diskMiB: Type.Optional(Type.Integer({ minimum: 256, maximum: 16 * 1024 * 1024 })),
    }),
    result: NodeSandboxSchema,
  },
  /**
   * Hands a sandbox made ahead of time (the warm pool) to its tenant: envd gets the new
   * access token (the old one stops working) and env vars, and the policy is applied.
   */
  'sandbox.claim': {
    payload: Type.Object({
      sandboxId,
      accessToken: Type.String(),
      envVars: Type.Optional(StringMap),
      network: Type.Optional(NetworkPolicySchema),
    }),
    result: NodeSandboxSchema,
  },
  'sandbox.kill': {
    payload: Type.Object({ sandboxId }),
    /** `existed` is false when the node did not have the sandbox. */
    result: Type.Object({ existed: Type.Boolean() }),
  },
  /** With its memory, or (`memory: false`) its processes ended and its disk kept. */
  'sandbox.pause': {
    payload: Type.Object({ sandboxId, memory: Type.Optional(Type.Boolean()) }),
    result: empty,
  },
  /** Where it was, or booted afresh over its disk when paused without memory or `memory: false`. */
  'sandbox.resume': {
    payload: Type.Object({ sandboxId, memory: Type.Optional(Type.Boolean()) }),
    result: empty,
  },
  'sandbox.update-network': {
    payload: Type.Object({ sandboxId, policy: NetworkPolicySchema }),
    result: empty,
  },
  /**
   * When the sandbox's time is up (the server's end time, E2B's timeout), so that a node
   * cut off from the server still ends it: at `deadline` plus `graceSeconds` (the server
   * normally acts first) the node kills it — or pauses it, `onDeadline: 'pause'` (autoPause)
   * — and reports its end with reason `timeout`. `deadline: null` clears it (paused, say).
   * Sent at create and whenever the end time changes; the last one sent wins.
   */
  'sandbox.set-deadline': {
    payload: Type.Object({
      sandboxId,
      deadline: Type.Union([Type.String({ minLength: 1, maxLength: 40 }), Type.Null()]),
      graceSeconds: Type.Optional(Type.Integer({ minimum: 0, maximum: 3600 })),
      onDeadline: Type.Optional(Type.Enum(['kill', 'pause'])),
    }),
    result: empty,
  },
  /** Saves a running or paused sandbox under `name`; its own state does not change. */
  'sandbox.checkpoint': {
    payload: Type.Object({ sandboxId, name: checkpointName }),
    result: NodeCheckpointSchema,
  },
  /** The sandbox's console output (init and envd). */
  'sandbox.console-log': {
    payload: Type.Object({ sandboxId }),
    result: Type.Object({ text: Type.String() }),
  },
  /** A sample of the sandbox's resource use, measured by the node. */
  'sandbox.usage': { payload: Type.Object({ sandboxId }), result: SandboxUsageSchema },
  'checkpoint.remove': {
    payload: Type.Object({ name: checkpointName }),
    result: Type.Object({ existed: Type.Boolean() }),
  },
  /** Builds a template in build sandboxes of the node; its log comes as progress. */
  'template.build': {
    payload: Type.Object({ ...BuildRequestSchema.properties, buildLayers }),
    result: BuildResultSchema,
  },
  /** Frees the layers of `layers` that no template image still uses. */
  'layers.remove': { payload: Type.Object({ layers: Type.Array(Type.String()) }), result: empty },
  /**
   * Uploads these layers and checkpoints (since 1.2) of the node's store to the server's
   * (`PUT NODE_ROUTES.layers/:hash`, `PUT NODE_ROUTES.checkpoints/:name`, a tar stream with
   * its sha256 in ARTEFACT_DIGEST_HEADER). MISSING_ARTEFACT if it lacks one.
   */
  'artefact.push': {
    payload: Type.Object({ layers: layerHashes, checkpoints: checkpointNames }),
    result: Type.Object({
      layers: Type.Array(Type.Object({ hash: Type.String(), digest: Type.String(), bytes: Type.Integer() })),
      checkpoints: Type.Optional(
        Type.Array(Type.Object({ name: Type.String(), digest: Type.String(), bytes: Type.Integer() })),
      ),
    }),
  },
  /**
   * Downloads the layers and checkpoints it lacks of these from the server's store (`GET
   * NODE_ROUTES.layers/:hash`, `GET NODE_ROUTES.checkpoints/:name`), each checked against its
   * digest before it is put in place; `fetched` are the layers it lacked, `checkpoints` the
   * checkpoints.
   */
  'artefact.fetch': {
    payload: Type.Object({ layers: layerHashes, checkpoints: checkpointNames }),
    result: Type.Object({
      fetched: Type.Array(Type.String()),
      checkpoints: Type.Optional(Type.Array(Type.String())),
    }),
  },
  /** Stops a running command (a build); `cancelled` is false if it was not running. */
  'command.cancel': {
    payload: Type.Object({ commandId: Type.String() }),
    result: Type.Object({ cancelled: Type.Boolean() }),
  },
} as const satisfies Record<string, { payload: TSchema; result: TSchema }>;

export type NodeCommandKind = keyof typeof NODE_COMMANDS;
export const NODE_COMMAND_KINDS = Object.keys(NODE_COMMANDS) as NodeCommandKind[];
export type CommandPayload<K extends NodeCommandKind> = Static<(typeof NODE_COMMANDS)[K]['payload']>;
export type CommandResult<K extends NodeCommandKind> = Static<(typeof NODE_COMMANDS)[K]['result']>;

/** A command as it is sent: its id, kind, when it was issued and until when it may run. */
export type NodeCommand<K extends NodeCommandKind = NodeCommandKind> = {
  [k in K]: { id: string; kind: k; issuedAt: string; deadline?: string; payload: CommandPayload<k> };
}[K];

const EnvelopeSchema = Type.Object({
  id: Type.String({ minLength: 8, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
  kind: Type.String(),
  issuedAt: Type.String(),
  deadline: Type.Optional(Type.String()),
  payload: Type.Unknown(),
});

function problems(schema: TSchema, value: unknown): string | undefined {
  if (Value.Check(schema, value)) return undefined;
  return [...Value.Errors(schema, value)]
    .slice(0, 3)
    .map((e) => `${e.instancePath || '/'} ${e.message}`)
    .join('; ');
}

/** Why `value` is not a command this contract knows, or undefined if it is one. */
export function commandProblem(value: unknown): string | undefined {
  const envelope = problems(EnvelopeSchema, value);
  if (envelope) return `not a command: ${envelope}`;
  const { kind, payload } = value as { kind: string; payload: unknown };
  if (!Object.hasOwn(NODE_COMMANDS, kind)) return `unknown command kind ${JSON.stringify(kind)}`;
  const p = problems(NODE_COMMANDS[kind as NodeCommandKind].payload, payload);
  return p ? `${kind}: ${p}` : undefined;
}

/** Why `data` is not the result of a `kind` command, or undefined if it is one. */
export function resultProblem(kind: NodeCommandKind, data: unknown): string | undefined {
  const p = problems(NODE_COMMANDS[kind].result, data);
  return p ? `${kind} result: ${p}` : undefined;
}

/** What a node answers a command with. */
export const NodeCommandOutcomeSchema = Type.Union([
  Type.Object({ commandId: Type.String(), ok: Type.Literal(true), data: Type.Unknown() }),
  Type.Object({ commandId: Type.String(), ok: Type.Literal(false), error: NodeFailureSchema }),
]);
export type NodeCommandOutcome = Static<typeof NodeCommandOutcomeSchema>;
