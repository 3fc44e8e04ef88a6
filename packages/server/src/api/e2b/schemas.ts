import { type Static, Type } from 'typebox';

// Request and response shapes of E2B's REST API (the fields the e2b SDK 2.51 sends and
// reads), as JSON Schema for validation and the OpenAPI document.

/** E2B's maximum sandbox lifetime: 24 hours. */
export const MAX_TIMEOUT_S = 86_400;

const Timeout = Type.Integer({ minimum: 0, maximum: MAX_TIMEOUT_S, description: 'seconds' });

/** A string the database can store: PostgreSQL text and jsonb hold no NUL character. */
export const Text = (options: { minLength?: number; maxLength: number }) =>
  Type.String({ ...options, pattern: '^[^\\u0000]*$' });

const StringMap = (maxProperties: number, maxValue: number) =>
  Type.Record(Text({ minLength: 1, maxLength: 256 }), Text({ maxLength: maxValue }), { maxProperties });

export const Metadata = StringMap(64, 1024);
export const EnvVars = StringMap(256, 32 * 1024);

export const SandboxNetworkConfig = Type.Object(
  {
    allowOut: Type.Optional(Type.Array(Text({ maxLength: 256 }), { maxItems: 1000 })),
    denyOut: Type.Optional(Type.Array(Text({ maxLength: 256 }), { maxItems: 1000 })),
    allowPublicTraffic: Type.Optional(Type.Boolean()),
    /** The Host header requests to the sandbox's ports (not envd) carry; `${PORT}` stands for the port. */
    maskRequestHost: Type.Optional(Text({ maxLength: 256 })),
    httpsPorts: Type.Optional(
      Type.Array(Type.Integer({ minimum: 1, maximum: 65535 }), {
        maxItems: 100,
        description:
          'Sandbox ports that serve HTTPS: the proxy reaches them over TLS (certificates not verified); not 49983',
      }),
    ),
  },
  { additionalProperties: true },
);
export type SandboxNetworkConfig = Static<typeof SandboxNetworkConfig>;

export const NewSandbox = Type.Object(
  {
    templateID: Text({ minLength: 1, maxLength: 128 }),
    timeout: Type.Optional(Timeout),
    metadata: Type.Optional(Metadata),
    envVars: Type.Optional(EnvVars),
    allow_internet_access: Type.Optional(Type.Boolean()),
    network: Type.Optional(SandboxNetworkConfig),
    autoPause: Type.Optional(Type.Boolean()),
    autoResume: Type.Optional(Type.Object({ enabled: Type.Boolean() })),
    /** With autoPause: false pauses at the timeout without memory (disk only; a resume boots afresh). */
    autoPauseMemory: Type.Optional(Type.Boolean()),
    secure: Type.Optional(Type.Boolean()),
    iam: Type.Optional(Type.Unknown({ description: 'not supported by aiva: only an empty one is accepted' })),
    mcp: Type.Optional(
      Type.Unknown({
        description:
          'MCP servers for the gateway the SDK starts in the sandbox (mcp-gateway template): npm/<package>, pypi/<package>, or { runCmd }',
      }),
    ),
    volumeMounts: Type.Optional(
      Type.Union([
        Type.Array(
          Type.Object({
            name: Type.String({ minLength: 1, maxLength: 63 }),
            path: Type.String({ minLength: 1, maxLength: 4096 }),
          }),
          { maxItems: 16 },
        ),
        Type.Null(),
      ]),
    ),
  },
  { additionalProperties: true },
);
export type NewSandbox = Static<typeof NewSandbox>;

export const SandboxParams = Type.Object({ sandboxID: Type.String({ pattern: '^[a-z0-9]{1,64}$' }) });
export type SandboxParams = Static<typeof SandboxParams>;

/** `PUT /sandboxes/{id}/network`: the whole egress policy, replacing the one before. */
export const NetworkUpdateBody = Type.Object(
  {
    allowOut: Type.Optional(Type.Array(Text({ maxLength: 256 }), { maxItems: 1000 })),
    denyOut: Type.Optional(Type.Array(Text({ maxLength: 256 }), { maxItems: 1000 })),
    allow_internet_access: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: true },
);
export type NetworkUpdateBody = Static<typeof NetworkUpdateBody>;

export const TimeoutBody = Type.Object({ timeout: Timeout }, { additionalProperties: true });
export const ConnectBody = Type.Object(
  { timeout: Type.Optional(Timeout), memory: Type.Optional(Type.Boolean()) },
  { additionalProperties: true },
);
export const PauseBody = Type.Object(
  { memory: Type.Optional(Type.Boolean()) },
  { additionalProperties: true },
);

export const ListQuery = Type.Object({
  metadata: Type.Optional(Text({ maxLength: 8192 })),
  state: Type.Optional(Type.String({ maxLength: 64 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  nextToken: Type.Optional(Type.String({ maxLength: 512 })),
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
  startedAfter: Type.Optional(Type.String({ format: 'date-time' })),
  template: Type.Optional(Text({ maxLength: 128 })),
});
export type ListQuery = Static<typeof ListQuery>;

export const MetricsQuery = Type.Object({
  start: Type.Optional(Type.Integer({ minimum: 0 })),
  end: Type.Optional(Type.Integer({ minimum: 0 })),
});

/** `POST /sandboxes/{id}/refreshes`: keep the sandbox alive `duration` more seconds (at least 15). */
export const RefreshBody = Type.Object(
  { duration: Type.Optional(Type.Integer({ description: 'seconds (default and minimum 15)' })) },
  { additionalProperties: true },
);

/** `GET /sandboxes/metrics`: the newest sample of each sandbox named (comma-separated). */
export const BatchMetricsQuery = Type.Object({
  sandbox_ids: Text({ minLength: 1, maxLength: 8192 }),
});

export const TeamParams = Type.Object({ teamID: Text({ minLength: 1, maxLength: 128 }) });

/** E2B's latest time a metric may name (ClickHouse's last DateTime64: 2299-12-31T23:59:59Z). */
const MAX_METRIC_TIME_S = 10_413_791_999;

export const TeamMetricsQuery = Type.Object({
  start: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: MAX_METRIC_TIME_S,
      description: 'unix seconds (default: 7 days ago)',
    }),
  ),
  end: Type.Optional(
    Type.Integer({ minimum: 0, maximum: MAX_METRIC_TIME_S, description: 'unix seconds (default: now)' }),
  ),
});

export const TeamMetricsMaxQuery = Type.Object({
  ...TeamMetricsQuery.properties,
  metric: Type.Union([Type.Literal('concurrent_sandboxes'), Type.Literal('sandbox_start_rate')]),
});

export const TeamMetric = Type.Object({
  timestamp: Type.String(),
  timestampUnix: Type.Integer(),
  concurrentSandboxes: Type.Integer(),
  sandboxStartRate: Type.Number({ description: 'sandboxes started per second' }),
});
export type TeamMetric = Static<typeof TeamMetric>;

export const MaxTeamMetric = Type.Object({
  timestamp: Type.String(),
  timestampUnix: Type.Integer(),
  value: Type.Number(),
});
export type MaxTeamMetric = Static<typeof MaxTeamMetric>;

export const LogsQuery = Type.Object({
  cursor: Type.Optional(Type.Integer({ minimum: 0 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
  direction: Type.Optional(Type.Union([Type.Literal('forward'), Type.Literal('backward')])),
  level: Type.Optional(
    Type.Union([Type.Literal('debug'), Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]),
  ),
  search: Type.Optional(Text({ maxLength: 256 })),
});

export const ErrorBody = Type.Object({ code: Type.Integer(), message: Type.String() });

/** The error responses a sandbox or snapshot route may give, as `{code, message}`. */
export const ErrorResponses = {
  400: ErrorBody,
  401: ErrorBody,
  403: ErrorBody,
  404: ErrorBody,
  409: ErrorBody,
  429: ErrorBody,
  503: ErrorBody,
};

export const Sandbox = Type.Object({
  sandboxID: Type.String(),
  templateID: Type.String(),
  alias: Type.Optional(Type.String()),
  clientID: Type.String(),
  envdVersion: Type.String(),
  envdAccessToken: Type.Optional(Type.String()),
  trafficAccessToken: Type.Optional(Type.Union([Type.String(), Type.Null()])),
  domain: Type.Optional(Type.Union([Type.String(), Type.Null()])),
});
export type Sandbox = Static<typeof Sandbox>;

const Lifecycle = Type.Object({
  onTimeout: Type.Union([Type.Literal('kill'), Type.Literal('pause')]),
  autoResume: Type.Boolean(),
});

export const ListedSandbox = Type.Object({
  sandboxID: Type.String(),
  templateID: Type.String(),
  alias: Type.Optional(Type.String()),
  clientID: Type.String(),
  cpuCount: Type.Integer(),
  memoryMB: Type.Integer(),
  diskSizeMB: Type.Integer(),
  startedAt: Type.String(),
  endAt: Type.String(),
  envdVersion: Type.String(),
  state: Type.Union([Type.Literal('running'), Type.Literal('paused')]),
  metadata: Type.Optional(Type.Record(Type.String(), Type.String())),
  /** The volumes it mounts (E2B's `{name, path}`). */
  volumeMounts: Type.Optional(Type.Array(Type.Object({ name: Type.String(), path: Type.String() }))),
  /** aiva's: the sandbox's team, in the operator's list of every team's (the console's stream). */
  teamID: Type.Optional(Type.String()),
});
export type ListedSandbox = Static<typeof ListedSandbox>;

export const SandboxDetail = Type.Intersect([
  ListedSandbox,
  Type.Object({
    envdAccessToken: Type.Optional(Type.String()),
    domain: Type.Optional(Type.Union([Type.String(), Type.Null()])),
    allowInternetAccess: Type.Optional(Type.Union([Type.Boolean(), Type.Null()])),
    network: Type.Optional(SandboxNetworkConfig),
    lifecycle: Type.Optional(Lifecycle),
  }),
]);
export type SandboxDetail = Static<typeof SandboxDetail>;

export const SandboxMetric = Type.Object({
  timestamp: Type.String(),
  timestampUnix: Type.Integer(),
  cpuCount: Type.Integer(),
  cpuUsedPct: Type.Number(),
  memUsed: Type.Integer(),
  memTotal: Type.Integer(),
  memCache: Type.Integer(),
  diskUsed: Type.Integer(),
  diskTotal: Type.Integer(),
});
export type SandboxMetric = Static<typeof SandboxMetric>;

export const SandboxLogEntry = Type.Object({
  timestamp: Type.String(),
  level: Type.Union([
    Type.Literal('debug'),
    Type.Literal('info'),
    Type.Literal('warn'),
    Type.Literal('error'),
  ]),
  message: Type.String(),
  fields: Type.Record(Type.String(), Type.String()),
});
export type SandboxLogEntry = Static<typeof SandboxLogEntry>;

export const TemplateAlias = Type.Object({ templateID: Type.String(), public: Type.Boolean() });

/** `POST /sandboxes/{id}/fork`. */
export const ForkBody = Type.Object(
  {
    timeout: Type.Optional(Timeout),
    count: Type.Optional(Type.Integer({ description: 'forks to make, 1–100 (default 1)' })),
  },
  { additionalProperties: true },
);
export type ForkBody = Static<typeof ForkBody>;

/** One fork's outcome: exactly one of `sandbox` and `error`. */
export const SandboxForkResult = Type.Object({
  sandbox: Type.Optional(Sandbox),
  error: Type.Optional(Type.Object({ code: Type.Integer(), message: Type.String() })),
});
export type SandboxForkResult = Static<typeof SandboxForkResult>;

/** `POST /sandboxes/{id}/snapshots`. */
export const SnapshotBody = Type.Object(
  { name: Type.Optional(Text({ minLength: 1, maxLength: 128 })) },
  { additionalProperties: true },
);

export const SnapshotInfo = Type.Object({
  /** What `Sandbox.create` takes: `name:default`, or `id:default` for a snapshot without a name. */
  snapshotID: Type.String(),
  names: Type.Array(Type.String()),
});
export type SnapshotInfo = Static<typeof SnapshotInfo>;

export const SnapshotListQuery = Type.Object({
  sandboxID: Type.Optional(Type.String({ pattern: '^[a-z0-9]{1,64}$' })),
  name: Type.Optional(Text({ minLength: 1, maxLength: 128 })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  nextToken: Type.Optional(Text({ maxLength: 512 })),
});
export type SnapshotListQuery = Static<typeof SnapshotListQuery>;
