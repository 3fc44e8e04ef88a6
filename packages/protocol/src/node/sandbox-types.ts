import { type Static, Type } from 'typebox';

// What crosses the server ↔ node contract about sandboxes, templates and builds: plain
// JSON (times are ISO strings), so that the node in the server's process and a node on
// another host are told the same thing. Objects accept fields they do not know.

export const StringMap = Type.Record(Type.String(), Type.String());

/** A volume's id (`vol` + hex, also its directory's name on the node). */
export const VOLUME_ID_PATTERN = '^vol[a-f0-9]{20}$';

/**
 * A volume bound into a sandbox: the node's directory `<home>/volumes/<volumeId>` at the
 * absolute `path` in the sandbox (no `..`, not `/`, `/proc`, `/sys` or `/dev`).
 */
export const VolumeMountSchema = Type.Object({
  volumeId: Type.String({ pattern: VOLUME_ID_PATTERN }),
  path: Type.String({ pattern: '^/[^\\0]*$', maxLength: 4096 }),
});
export type VolumeMount = Static<typeof VolumeMountSchema>;

/** Where a volume may not be mounted: the root, and what the sandbox's kernel interfaces are. */
const RESERVED_MOUNT_PATHS = ['/proc', '/sys', '/dev'];

/** Why `path` cannot be a volume's mount path in a sandbox, or undefined if it can. */
export function volumeMountPathProblem(path: string): string | undefined {
  if (typeof path !== 'string' || !path.startsWith('/')) return 'is not an absolute path';
  if (path.length > 4096 || path.includes('\0')) return 'is not a usable path';
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0) return 'is the root directory';
  if (parts.some((p) => p === '..' || p === '.')) return 'must not contain "." or ".."';
  const normal = `/${parts.join('/')}`;
  if (RESERVED_MOUNT_PATHS.some((r) => normal === r || normal.startsWith(`${r}/`)))
    return `is under ${RESERVED_MOUNT_PATHS.join(', ')}`;
  return undefined;
}

/** A sandbox's egress policy: CIDRs, addresses and domain names (E2B's `allowOut`/`denyOut`). */
export const NetworkPolicySchema = Type.Object({
  allowInternetAccess: Type.Optional(Type.Boolean()),
  allowOut: Type.Optional(Type.Array(Type.String())),
  denyOut: Type.Optional(Type.Array(Type.String())),
});
export type NodeNetworkPolicy = Static<typeof NetworkPolicySchema>;

/** A sandbox as the control plane sees it (the node's own states collapsed). */
export const NodeSandboxSchema = Type.Object({
  id: Type.String(),
  state: Type.Enum(['creating', 'running', 'paused', 'stopping', 'stopped', 'error']),
  vcpus: Type.Integer({ minimum: 0 }),
  memoryMiB: Type.Integer({ minimum: 0 }),
  diskMiB: Type.Integer({ minimum: 0 }),
  envdVersion: Type.String(),
  error: Type.Optional(Type.String()),
  /** Why the node ended it by itself (`stopped`): its deadline passed (`sandbox.set-deadline`). */
  endReason: Type.Optional(Type.Enum(['timeout'])),
  /** Paused without its memory: its processes ended, its disk kept; a resume boots it afresh. */
  withoutMemory: Type.Optional(Type.Boolean()),
});
export type NodeSandbox = Static<typeof NodeSandboxSchema>;

/** A saved sandbox on a node. */
export const NodeCheckpointSchema = Type.Object({
  name: Type.String(),
  /** Whether it holds memory and processes (microVMs) or files only (containers). */
  memory: Type.Boolean(),
  bytes: Type.Integer({ minimum: 0 }),
});
export type NodeCheckpoint = Static<typeof NodeCheckpointSchema>;

/** A sample of a sandbox's resource use (E2B's metric fields). */
export const SandboxUsageSchema = Type.Object({
  timestamp: Type.String(),
  cpuCount: Type.Number(),
  cpuUsedPct: Type.Number(),
  memUsed: Type.Number(),
  memTotal: Type.Number(),
  memCache: Type.Number(),
  diskUsed: Type.Number(),
  diskTotal: Type.Number(),
  /**
   * Bytes the sandbox has sent out of the host (to anywhere but the host itself) since
   * the node's counter for it began: cumulative, so a reading lower than the one before
   * means the counter started again (the sandbox moved to another node). Since 1.3;
   * absent where the node keeps no counter.
   */
  egressBytes: Type.Optional(Type.Integer({ minimum: 0 })),
});
export type SandboxUsage = Static<typeof SandboxUsageSchema>;

/**
 * What a template is, independent of envd: its content layers (top first) and how its
 * sandboxes start. A node composes it with its own guest layer.
 */
export const TemplateDefinitionSchema = Type.Object({
  name: Type.String(),
  layers: Type.Array(Type.String()),
  diskSizeMiB: Type.Integer({ minimum: 1 }),
  defaults: Type.Object({
    user: Type.String(),
    workdir: Type.String(),
    vcpus: Type.Integer({ minimum: 1 }),
    memoryMiB: Type.Integer({ minimum: 1 }),
  }),
  env: Type.Optional(StringMap),
  start: Type.Optional(
    Type.Object({ cmd: Type.String(), ready: Type.Optional(Type.String()), env: Type.Optional(StringMap) }),
  ),
  recipeHash: Type.Optional(Type.String()),
});
export type TemplateDefinitionData = Static<typeof TemplateDefinitionSchema>;

/** Who and where a build's commands run as, and with what environment. */
export const BuildContextSchema = Type.Object({
  user: Type.String(),
  workdir: Type.Optional(Type.String()),
  env: StringMap,
  /** The image's ENTRYPOINT then CMD (builds from a registry image or an archive). */
  command: Type.Optional(Type.Array(Type.String())),
});

/**
 * A template build, as a node is asked for it. Uploaded files (a COPY step's, an image
 * archive) are named by their hash in the team's store, which the node reads from the
 * server (or, in the server's process, from its disk).
 */
export const BuildRequestSchema = Type.Object({
  name: Type.String(),
  base: Type.Union([
    Type.Object({
      template: Type.Union([Type.String(), TemplateDefinitionSchema]),
      context: Type.Optional(BuildContextSchema),
    }),
    Type.Object({
      image: Type.String(),
      credentials: Type.Optional(Type.Object({ username: Type.String(), password: Type.String() })),
    }),
    /** An image archive uploaded to the team's store (`aiva template import`). */
    Type.Object({ archiveHash: Type.String() }),
  ]),
  steps: Type.Array(
    Type.Object({
      type: Type.String(),
      args: Type.Array(Type.String()),
      filesHash: Type.Optional(Type.String()),
      force: Type.Optional(Type.Boolean()),
    }),
  ),
  startCmd: Type.Optional(Type.String()),
  readyCmd: Type.Optional(Type.String()),
  /** Fail at the base when it has no command (ENTRYPOINT/CMD) to run (`aiva deploy <env> <image>`). */
  requireCommand: Type.Optional(Type.Boolean()),
  force: Type.Optional(Type.Boolean()),
  vcpus: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 1 }),
  diskSizeMiB: Type.Optional(Type.Integer({ minimum: 1 })),
  /** The team whose uploaded files the build reads. */
  filesTeam: Type.String(),
});
export type BuildRequest = Static<typeof BuildRequestSchema>;

export const BuildResultSchema = Type.Object({
  definition: TemplateDefinitionSchema,
  context: BuildContextSchema,
  /** The layers of the build's own steps (made or reused), never its base's. */
  layers: Type.Array(Type.String()),
  cachedSteps: Type.Integer({ minimum: 0 }),
});
export type BuildResultData = Static<typeof BuildResultSchema>;

/** A line of a build's log: `step` is `base`, the step's number from 1, or `finalize`. */
export const BuildLogLineSchema = Type.Object({
  timestamp: Type.String(),
  level: Type.Enum(['debug', 'info', 'warn', 'error']),
  step: Type.String(),
  message: Type.String(),
});
export type BuildLogLine = Static<typeof BuildLogLineSchema>;
