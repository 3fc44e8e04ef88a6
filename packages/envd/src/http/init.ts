import { writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ACCESS_TOKEN_HEADER, sameSecret } from '../auth.js';
import type { Envd } from '../context.js';
import { runHelper } from '../native.js';
import { jsonError, readBody } from './respond.js';

/** The body of POST /init (every field optional). */
export interface InitRequest {
  envVars?: Record<string, string>;
  accessToken?: string;
  defaultUser?: string;
  defaultWorkdir?: string;
  /** The host's clock (RFC 3339), to set the guest's after boot or restore. */
  timestamp?: string;
  hostname?: string;
  /**
   * Random bytes from the host (hex, up to 512 bytes), credited to the kernel's entropy
   * pool before its CRNG is reseeded: sandboxes restored from one saved VM would otherwise
   * draw the same "random" numbers until the kernel reseeds on its own. An aiva extension.
   */
  entropy?: string;
}

const isStringMap = (v: unknown): v is Record<string, string> =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === 'string');

/** Hostnames as sethostname(2) takes them, restricted to DNS labels. */
const HOSTNAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/**
 * POST /init: the node agent configures a fresh (or just restored) sandbox. It can be
 * called again at any time; replacing an access token that is already set requires
 * presenting the current one in X-Access-Token (a restored snapshot gets a new token
 * from whoever holds the old one). The clock is set only when it is off by more than a
 * second.
 */
export async function init(envd: Envd, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let body: InitRequest;
  try {
    const raw = (await readBody(req)).toString('utf8').trim();
    body = raw ? (JSON.parse(raw) as InitRequest) : {};
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      throw new Error('not a JSON object');
  } catch (e) {
    jsonError(res, 400, `invalid init request: ${(e as Error).message}`, req);
    return;
  }
  const { state, users } = envd;
  const problems: string[] = [];
  if (body.envVars !== undefined && !isStringMap(body.envVars))
    problems.push('envVars must map strings to strings');
  for (const k of [
    'accessToken',
    'defaultUser',
    'defaultWorkdir',
    'timestamp',
    'hostname',
    'entropy',
  ] as const) {
    if (body[k] !== undefined && typeof body[k] !== 'string') problems.push(`${k} must be a string`);
  }
  if (body.defaultUser) {
    try {
      users.lookup(body.defaultUser);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (
    body.defaultWorkdir !== undefined &&
    body.defaultWorkdir !== '' &&
    !body.defaultWorkdir.startsWith('/')
  ) {
    problems.push('defaultWorkdir must be absolute');
  }
  if (body.entropy !== undefined && !/^([0-9a-f]{2}){1,512}$/.test(body.entropy))
    problems.push('entropy must be 1 to 512 bytes in lower-case hex');
  if (body.hostname !== undefined && !HOSTNAME.test(body.hostname))
    problems.push('hostname is not a valid host name');
  const when = body.timestamp !== undefined ? Date.parse(body.timestamp) : undefined;
  if (when !== undefined && Number.isNaN(when)) problems.push('timestamp is not a date');
  if (problems.length > 0) {
    jsonError(res, 400, problems.join('; '), req);
    return;
  }
  if (
    body.accessToken !== undefined &&
    state.accessToken !== undefined &&
    body.accessToken !== state.accessToken
  ) {
    const presented = req.headers[ACCESS_TOKEN_HEADER];
    if (typeof presented !== 'string' || !sameSecret(presented, state.accessToken)) {
      jsonError(res, 401, 'the access token is already set: present the current one to replace it', req);
      return;
    }
  }

  if (when !== undefined && Math.abs(when - Date.now()) > 1000) {
    await runHelper(envd.helper, [
      'set-clock',
      String(Math.floor(when / 1000)),
      String((when % 1000) * 1e6),
    ]).catch((e: Error) => process.stderr.write(`envd: cannot set the clock: ${e.message}\n`));
  }
  if (body.entropy) {
    // Not allowed where envd lacks CAP_SYS_ADMIN (containers, which share the host's RNG).
    await runHelper(envd.helper, ['reseed-rng', body.entropy]).then(
      () => process.stderr.write('envd: random number generator reseeded\n'),
      (e: Error) => process.stderr.write(`envd: cannot reseed the random number generator: ${e.message}\n`),
    );
  }
  if (body.hostname) {
    await writeFile('/proc/sys/kernel/hostname', body.hostname).catch((e: Error) =>
      process.stderr.write(`envd: cannot set the hostname: ${e.message}\n`),
    );
  }
  if (body.envVars) for (const [k, v] of Object.entries(body.envVars)) state.envVars.set(k, v);
  if (body.accessToken !== undefined) state.accessToken = body.accessToken || undefined;
  if (body.defaultUser) state.defaultUser = body.defaultUser;
  if (body.defaultWorkdir !== undefined) state.defaultWorkdir = body.defaultWorkdir || undefined;
  res.writeHead(204, { 'cache-control': 'no-store' }).end();
}
