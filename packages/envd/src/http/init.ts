import { writeFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ENVD_ACCESS_TOKEN_HEADER, type EnvdInit, EnvdInitBody } from '@aiva/protocol';
import { Check, Errors } from 'typebox/value';
import { sameSecret } from '../auth.js';
import type { Envd } from '../context.js';
import { runHelper } from '../native.js';
import { jsonError, readBody } from './respond.js';

/** What a field that fails EnvdInitBody's constraint (rather than its type) is told. */
const CONSTRAINTS: Partial<Record<keyof EnvdInit, string>> = {
  envVars: 'envVars must map strings to strings',
  defaultWorkdir: 'defaultWorkdir must be absolute',
  entropy: 'entropy must be 1 to 512 bytes in lower-case hex',
  hostname: 'hostname is not a valid host name',
};

/** The problems of a body that is not an EnvdInit, one per field, in the schema's order. */
function schemaProblems(body: unknown): string[] {
  const problems = new Map<string, string>();
  for (const e of Errors(EnvdInitBody, body)) {
    const field = e.instancePath.split('/')[1] ?? '';
    if (problems.has(field)) continue;
    if (field === '')
      problems.set(field, `invalid init request: ${e.keyword === 'type' ? 'not a JSON object' : e.message}`);
    else if (field === 'envVars' || e.keyword !== 'type')
      problems.set(field, CONSTRAINTS[field as keyof EnvdInit] ?? `${field} ${e.message}`);
    else problems.set(field, `${field} must be a string`);
  }
  return [...problems.values()];
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
  const valid = Check(EnvdInitBody, parsed);
  const problems = valid ? [] : schemaProblems(parsed);
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
  if (!valid || problems.length > 0) {
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
