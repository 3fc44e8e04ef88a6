// envd's REST contract: its port, the header names it and its callers use, and the
// bodies of its JSON endpoints as TypeBox schemas (the Connect services are in gen/).
// envd validates POST /init with EnvdInitBody; the node sends EnvdInit and reads
// EnvdMetrics; the server's proxy routes on ENVD_PORT.
import { type Static, Type } from 'typebox';

/** envd's port inside every sandbox (E2B's). */
export const ENVD_PORT = 49983;

// Header names, lower-case as Node's IncomingMessage.headers holds them (HTTP header
// names are case-insensitive).

/** `X-Access-Token`: envd's access token, set by POST /init; every call but the open ones carries it. */
export const ENVD_ACCESS_TOKEN_HEADER = 'x-access-token';
/** `E2b-Envd-Version`: the version envd reports on `GET /health` (the SDK gates features on it). */
export const ENVD_VERSION_HEADER = 'e2b-envd-version';
/** `Keepalive-Ping-Interval`: seconds between keepalive messages on an idle Connect stream. */
export const ENVD_KEEPALIVE_HEADER = 'keepalive-ping-interval';
/** `X-Metadata-<Key>`: a file's metadata on `POST /files` (key lower-cased). */
export const ENVD_METADATA_HEADER_PREFIX = 'x-metadata-';

/**
 * Names to strings. (A Record alone checks only keys matching `^.*$`: a key with a line
 * break would take any value.)
 */
const stringMap = () => Type.Record(Type.String(), Type.String(), { additionalProperties: Type.String() });

/** Host names as sethostname(2) takes them, restricted to DNS labels. */
const HOSTNAME_PATTERN =
  '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';

/**
 * The body of `POST /init` (every field optional; unknown fields are ignored). It can be
 * sent again at any time (after a snapshot restore); replacing an access token that is
 * set needs the current one in X-Access-Token.
 */
export const EnvdInitBody = Type.Object({
  /** Sandbox-wide environment variables, added to those already set. */
  envVars: Type.Optional(stringMap()),
  /** envd's access token; the empty string removes it. */
  accessToken: Type.Optional(Type.String()),
  /** The user of calls that name none (must exist in the sandbox). */
  defaultUser: Type.Optional(Type.String()),
  /** The working directory of processes that name none: absolute, or empty to unset. */
  defaultWorkdir: Type.Optional(Type.String({ pattern: '^(/|$)' })),
  /**
   * The host's clock, to set the guest's after boot or restore (RFC 3339, as
   * `Date.toISOString()` writes it; envd takes whatever `Date.parse` reads).
   */
  timestamp: Type.Optional(Type.String()),
  /** The sandbox's host name. */
  hostname: Type.Optional(Type.String({ pattern: HOSTNAME_PATTERN })),
  /**
   * Random bytes from the host (1 to 512, lower-case hex), credited to the kernel's
   * entropy pool before its CRNG is reseeded: sandboxes restored from one saved VM would
   * otherwise draw the same "random" numbers until the kernel reseeds on its own. An aiva
   * extension.
   */
  entropy: Type.Optional(Type.String({ pattern: '^([0-9a-f]{2}){1,512}$' })),
});
export type EnvdInit = Static<typeof EnvdInitBody>;

/** The body of `GET /envs`: the sandbox-wide environment variables set by /init. */
export const EnvdEnvsBody = stringMap();
export type EnvdEnvs = Static<typeof EnvdEnvsBody>;

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
