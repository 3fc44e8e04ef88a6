import { readFile, rename, writeFile } from 'node:fs/promises';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { DRIVER_NAMES } from '../runtime/types.js';
import { SANDBOX_STATES } from './sandbox-state.js';

/**
 * What the node keeps on disk about its sandboxes and checkpoints: `sandbox.json` and
 * `checkpoint.json`, schema-checked on every read and versioned, so that a node finds
 * the records an older node wrote (and says clearly when a file is not one).
 */

/** One of `values`, typed as their union. */
const oneOf = <T extends string>(values: readonly T[]) =>
  Type.Unsafe<T>(Type.Union(values.map((v) => Type.Literal(v))));

const Driver = oneOf(DRIVER_NAMES);
const TemplateRef = Type.Object({ name: Type.String(), hash: Type.String() });
const Resources = Type.Object({
  vcpus: Type.Integer({ minimum: 1 }),
  memoryMiB: Type.Integer({ minimum: 1 }),
  diskMiB: Type.Integer({ minimum: 1 }),
});
const Policy = Type.Object({
  allowInternetAccess: Type.Optional(Type.Boolean()),
  allowOut: Type.Optional(Type.Array(Type.String())),
  denyOut: Type.Optional(Type.Array(Type.String())),
});
const NetworkAttachment = Type.Object({
  netns: Type.String(),
  address: Type.String(),
  guest: Type.Object({
    address: Type.String(),
    prefix: Type.Integer(),
    gateway: Type.String(),
    dns: Type.Optional(Type.String()),
  }),
  tap: Type.Optional(Type.String()),
  userns: Type.Optional(
    Type.Object({ path: Type.String(), hostId: Type.Integer(), count: Type.Integer({ minimum: 1 }) }),
  ),
});
/** A driver's own record of a running sandbox: these fields, and whatever else the driver keeps. */
const RuntimeStateSchema = Type.Object(
  {
    driver: Driver,
    pid: Type.Integer(),
    pidStartTime: Type.Number(),
    accel: Type.Optional(Type.Union([Type.Literal('kvm'), Type.Literal('tcg')])),
  },
  { additionalProperties: true },
);
const State = oneOf(SANDBOX_STATES);

export const SANDBOX_RECORD_VERSION = 1;

export const SandboxRecordSchema = Type.Object({
  version: Type.Literal(SANDBOX_RECORD_VERSION),
  id: Type.String({ pattern: '^[a-z0-9]{1,40}$' }),
  driver: Driver,
  template: TemplateRef,
  kernel: Type.Optional(Type.String()),
  resources: Resources,
  state: State,
  /** Why the sandbox is in `error`. */
  error: Type.Optional(Type.String()),
  slot: Type.Integer({ minimum: 0 }),
  network: Type.Optional(NetworkAttachment),
  /** Its egress policy (validated and normalized), applied on create, replaced by updateNetwork, re-applied on adoption. */
  networkPolicy: Type.Optional(Policy),
  runtime: Type.Optional(RuntimeStateSchema),
  hostname: Type.String(),
  /** envd's access token: every call to the sandbox's envd must carry it. */
  accessToken: Type.String(),
  /**
   * What envd's `/init` got besides the token (the create's env vars, default user and
   * directory, a claim's env vars): sent again when the sandbox boots afresh (a resume
   * of a sandbox paused without memory).
   */
  envdInit: Type.Optional(
    Type.Object({
      envVars: Type.Optional(Type.Record(Type.String(), Type.String())),
      defaultUser: Type.Optional(Type.String()),
      defaultWorkdir: Type.Optional(Type.String()),
    }),
  ),
  /** The version the sandbox's envd reports. */
  envdVersion: Type.Optional(Type.String()),
  /** Volumes of the node bound into it (`<home>/volumes/<volumeId>` at `path`), again at every boot. */
  volumes: Type.Optional(Type.Array(Type.Object({ volumeId: Type.String(), path: Type.String() }))),
  createdAt: Type.String(),
  startedAt: Type.Optional(Type.String()),
});

/** What the node keeps about a sandbox, in `<data dir>/sandboxes/<id>/sandbox.json`. */
export type SandboxRecord = Static<typeof SandboxRecordSchema> & {
  runtime?: Static<typeof RuntimeStateSchema> & Record<string, unknown>;
};

export const CHECKPOINT_RECORD_VERSION = 1;

export const CheckpointRecordSchema = Type.Object({
  version: Type.Literal(CHECKPOINT_RECORD_VERSION),
  name: Type.String(),
  /** The sandbox it was taken from. */
  source: Type.String(),
  driver: Driver,
  template: TemplateRef,
  kernel: Type.Optional(Type.String()),
  resources: Resources,
  networkPolicy: Type.Optional(Policy),
  /** Whether processes and memory were saved, or the filesystem only. */
  memory: Type.Boolean(),
  /** The token the saved envd holds (memory checkpoints): a copy's `/init` needs it to take its own. */
  accessToken: Type.Optional(Type.String()),
  /** What the checkpoint takes on disk. */
  bytes: Type.Integer({ minimum: 0 }),
  createdAt: Type.String(),
});

/**
 * A saved sandbox (`checkpoint`), in `<data dir>/checkpoints/<name>/`: what its driver
 * saved, and what a create from it needs to make an independent copy.
 */
export type CheckpointRecord = Static<typeof CheckpointRecordSchema>;

/** A file that is not a record this node can read. */
export class RecordError extends Error {
  override name = 'RecordError';
}

/**
 * Records written before they carried a version (version 0): a sandbox paused to disk
 * was `state: paused` with `suspended: true`; now `suspended` is a state.
 */
function upgrade(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || 'version' in data) return data;
  const { suspended, ...rest } = data as Record<string, unknown>;
  const live = rest.state === 'running' || rest.state === 'paused';
  return { version: 1, ...rest, ...(suspended === true && live ? { state: 'suspended' } : {}) };
}

function check<T>(schema: TSchema, data: unknown, file: string): T {
  if (Value.Check(schema, data)) return data as T;
  const problems = [...Value.Errors(schema, data)]
    .slice(0, 3)
    .map((e) => `${e.instancePath || '/'} ${e.message}`);
  throw new RecordError(`${file} is not a record this node can read: ${problems.join('; ')}`);
}

/** Reads a record; undefined if the file does not exist, RecordError if it is not a valid one. */
async function readRecord<T>(schema: TSchema, file: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new RecordError(`${file} is not JSON: ${(e as Error).message}`);
  }
  return check<T>(schema, upgrade(data), file);
}

export const readSandboxRecord = (file: string) => readRecord<SandboxRecord>(SandboxRecordSchema, file);
export const readCheckpointRecord = (file: string) =>
  readRecord<CheckpointRecord>(CheckpointRecordSchema, file);

/**
 * Writes a record atomically (a crash leaves the old one or the new one), readable by
 * root only: records hold envd access tokens.
 */
export async function writeRecord(file: string, record: SandboxRecord | CheckpointRecord): Promise<void> {
  await writeFile(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(`${file}.tmp`, file);
}
