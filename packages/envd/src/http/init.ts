import { writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ENVD_ACCESS_TOKEN_HEADER, ENVD_INIT_FIELDS, type EnvdInit } from '@aiva/protocol';
import { sameSecret } from '../auth.js';
import type { Envd } from '../context.js';
import { runHelper } from '../native.js';
import { jsonError, readBody } from './respond.js';

const PATTERNS = new Map(
  Object.entries(ENVD_INIT_FIELDS).flatMap(([name, f]) =>
    'pattern' in f ? [[name, new RegExp(f.pattern, 'u')] as const] : [],
  ),
);

const isStringMap = (v: unknown) =>
  typeof v === 'object' &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((x) => typeof x === 'string');

/**
 * The problems of a body that is not an EnvdInit, one per field in ENVD_INIT_FIELDS'
 * order (the contract's TypeBox schema, EnvdInitBody, is built from the same fields; a
 * test checks that both agree).
 */
export function initProblems(body: unknown): string[] {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return ['invalid init request: not a JSON object'];
  const problems: string[] = [];
  for (const [name, f] of Object.entries(ENVD_INIT_FIELDS)) {
    const value = (body as Record<string, unknown>)[name];
    if (value === undefined) continue;
    if (f.type === 'string map') {
      if (!isStringMap(value)) problems.push(f.rule);
    } else if (typeof value !== 'string') problems.push(`${name} must be a string`);
    else if (PATTERNS.get(name)?.test(value) === false)
      problems.push('rule' in f ? f.rule : `${name} is invalid`);
  }
  return problems;
}

/**
 * POST /init: the node agent configures a fresh (or just restored) sandbox. It can be
 * called again at any time; replacing an access token that is already set requires
 * presenting the current one in X-Access-Token (a restored snapshot gets a new token
 * from whoever holds the old one). The clock is set only when it is off by more than a
 * second.
 */
export async function init(envd: Envd, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let parsed: unknown;
  try {
    const raw = (await readBody(req)).toString('utf8').trim();
    parsed = raw ? JSON.parse(raw) : {};
  } catch (e) {
    jsonError(res, 400, `invalid init request: ${(e as Error).message}`, req);
    return;
  }
  // Every problem at once: the schema's, then an unknown user and an unreadable clock.
  const problems = initProblems(parsed);
  const fields = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  if (typeof fields.defaultUser === 'string' && fields.defaultUser) {
    try {
      envd.users.lookup(fields.defaultUser);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  const when = typeof fields.timestamp === 'string' ? Date.parse(fields.timestamp) : undefined;
  if (when !== undefined && Number.isNaN(when)) problems.push('timestamp is not a date');
  if (problems.length > 0) {
    jsonError(res, 400, problems.join('; '), req);
    return;
  }
  const body = parsed as EnvdInit;
  const { state } = envd;
  if (
    body.accessToken !== undefined &&
    state.accessToken !== undefined &&
    body.accessToken !== state.accessToken
  ) {
    const presented = req.headers[ENVD_ACCESS_TOKEN_HEADER];
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
