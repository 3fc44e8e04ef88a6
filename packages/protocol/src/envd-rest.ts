// envd's REST contract: its port, the header names it and its callers use, and the
// fields of POST /init as data (`ENVD_INIT_FIELDS`). The TypeBox schemas of the JSON
// bodies are built from the same data in envd-rest-schemas.ts. This module imports no
// schema library: envd's bundle takes it whole, and every sandbox start pays for what
// envd loads (TypeBox would add ~40 ms to each envd start here).

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

/** How `POST /init` constrains one field: a string (matching `pattern`, if given) or a map of names to strings. */
export type EnvdInitField =
  | { type: 'string'; pattern?: string /** Said when the pattern does not match. */; rule?: string }
  | { type: 'string map'; rule: string };

/** Host names as sethostname(2) takes them, restricted to DNS labels. */
const HOSTNAME_PATTERN =
  '^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$';

/**
 * The fields of `POST /init`'s body, every one optional; unknown fields are ignored. It
 * can be sent again at any time (after a snapshot restore); replacing an access token
 * that is set needs the current one in X-Access-Token.
 */
export const ENVD_INIT_FIELDS = {
  /** Sandbox-wide environment variables, added to those already set. */
  envVars: { type: 'string map', rule: 'envVars must map strings to strings' },
  /** envd's access token; the empty string removes it. */
  accessToken: { type: 'string' },
  /** The user of calls that name none (must exist in the sandbox). */
  defaultUser: { type: 'string' },
  /** The working directory of processes that name none: absolute, or empty to unset. */
  defaultWorkdir: { type: 'string', pattern: '^(/|$)', rule: 'defaultWorkdir must be absolute' },
  /**
   * The host's clock, to set the guest's after boot or restore (RFC 3339, as
   * `Date.toISOString()` writes it; envd takes whatever `Date.parse` reads).
   */
  timestamp: { type: 'string' },
  /** The sandbox's host name. */
  hostname: { type: 'string', pattern: HOSTNAME_PATTERN, rule: 'hostname is not a valid host name' },
  /**
   * Random bytes from the host (1 to 512, lower-case hex), credited to the kernel's
   * entropy pool before its CRNG is reseeded: sandboxes restored from one saved VM would
   * otherwise draw the same "random" numbers until the kernel reseeds on its own. An aiva
   * extension.
   */
  entropy: {
    type: 'string',
    pattern: '^([0-9a-f]{2}){1,512}$',
    rule: 'entropy must be 1 to 512 bytes in lower-case hex',
  },
} as const satisfies Record<string, EnvdInitField>;

/** What the node sends to `POST /init`. */
export type EnvdInit = {
  -readonly [K in keyof typeof ENVD_INIT_FIELDS]?: (typeof ENVD_INIT_FIELDS)[K] extends { type: 'string map' }
    ? Record<string, string>
    : string;
};

/** The body of `GET /envs`: the sandbox-wide environment variables set by /init. */
export type EnvdEnvs = Record<string, string>;
