// The TypeBox schemas of envd's JSON bodies, for whoever validates them with TypeBox (the
// node checks what a sandbox's envd answers: it is the tenant's, not ours). /init's is
// built from ENVD_INIT_FIELDS, which envd itself checks without a schema library.
import { type Static, type TSchema, Type } from 'typebox';
import { ENVD_INIT_FIELDS, type EnvdInitField } from './envd-rest.js';

/**
 * Names to strings. (A Record alone checks only keys matching `^.*$`: a key with a line
 * break would take any value.)
 */
const stringMap = () => Type.Record(Type.String(), Type.String(), { additionalProperties: Type.String() });

function fieldSchema(f: EnvdInitField): TSchema {
  if (f.type === 'string map') return stringMap();
  return 'pattern' in f && f.pattern ? Type.String({ pattern: f.pattern }) : Type.String();
}

/** The body of `POST /init` (see ENVD_INIT_FIELDS). */
export const EnvdInitBody = Type.Object(
  Object.fromEntries(
    Object.entries(ENVD_INIT_FIELDS).map(([name, f]) => [name, Type.Optional(fieldSchema(f))]),
  ),
);

/** The body of `GET /envs`. */
export const EnvdEnvsBody = stringMap();

/** The body of `GET /metrics` (E2B's field names): the sandbox's CPU, memory and disk. */
export const EnvdMetricsBody = Type.Object({
  /** When measured, Unix seconds. */
  ts: Type.Integer(),
  cpu_count: Type.Integer(),
  /** CPU busy since the previous call, percent (0–100). */
  cpu_used_pct: Type.Number(),
  /** Bytes. */
  mem_total: Type.Integer(),
  /** Bytes: total − available. */
  mem_used: Type.Integer(),
  /** Bytes of page cache (optional for readers: not every envd sends it). */
  mem_cache: Type.Optional(Type.Integer()),
  /** MiB (E2B's older fields; aiva's envd still sends them). */
  mem_total_mib: Type.Optional(Type.Integer()),
  mem_used_mib: Type.Optional(Type.Integer()),
  /** Bytes of the root filesystem. */
  disk_used: Type.Integer(),
  disk_total: Type.Integer(),
});
export type EnvdMetrics = Static<typeof EnvdMetricsBody>;
