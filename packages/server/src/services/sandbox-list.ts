import { and, asc, desc, eq, gt, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
import type { ListedSandbox, ListQuery, Sandbox, SandboxDetail } from '../api/e2b/schemas.js';
import type { Database } from '../db/database.js';
import { sandboxes } from '../db/schema.js';
import { InvalidRequestError } from './errors.js';
import { keysetPage, parseCursor } from './keyset-page.js';
import { type ApiState, apiState, isApiState } from './sandbox-states.js';

type Row = typeof sandboxes.$inferSelect;

/** What every view of a sandbox starts with: its id, template, alias and node. */
function identity(row: Pick<Row, 'id' | 'templateId' | 'alias' | 'nodeId'>) {
  return {
    sandboxID: row.id,
    templateID: row.templateId,
    ...(row.alias ? { alias: row.alias } : {}),
    clientID: row.nodeId,
  };
}

/** A sandbox as E2B's create and connect return it (`domain`: of host routing, if on). */
export function sandboxOf(row: Omit<Row, 'endedAt' | 'error'>, domain: string | undefined): Sandbox {
  return {
    ...identity(row),
    envdVersion: row.envdVersion,
    envdAccessToken: row.envdAccessToken,
    trafficAccessToken: row.trafficAccessToken,
    domain: domain ?? null,
  };
}

/** A stored sandbox as E2B's lists show it. */
export function listedSandbox(row: Row): ListedSandbox {
  return {
    ...identity(row),
    cpuCount: row.cpuCount,
    memoryMB: row.memoryMb,
    diskSizeMB: row.diskSizeMb,
    startedAt: row.startedAt.toISOString(),
    endAt: row.endAt.toISOString(),
    envdVersion: row.envdVersion,
    state: apiState(row.state),
    metadata: row.metadata,
  };
}

/** A stored sandbox as E2B's `GET /sandboxes/{id}` shows it. */
export function sandboxDetail(row: Row, domain: string | undefined): SandboxDetail {
  return {
    ...listedSandbox(row),
    envdAccessToken: row.envdAccessToken,
    domain: domain ?? null,
    allowInternetAccess: row.allowInternetAccess,
    ...(row.network ? { network: row.network } : {}),
    lifecycle: { onTimeout: row.onTimeout, autoResume: row.autoResume },
  };
}

/**
 * A team's sandboxes with E2B's filters (states, template or alias, started after,
 * metadata), ordered by start time, one keyset page at a time.
 */
export async function listSandboxes(
  db: Database,
  teamId: string,
  q: ListQuery,
): Promise<{ items: ListedSandbox[]; nextToken?: string }> {
  const states: ApiState[] = [];
  for (const s of (q.state ?? 'running,paused').split(',').map((s) => s.trim())) {
    if (!isApiState(s)) throw new InvalidRequestError(`state "${s}" is not running or paused`);
    states.push(s);
  }
  const where: SQL[] = [eq(sandboxes.teamId, teamId), inArray(sandboxes.state, states)];
  if (q.template)
    where.push(or(eq(sandboxes.templateId, q.template), eq(sandboxes.alias, q.template)) as SQL);
  if (q.startedAfter) where.push(gt(sandboxes.startedAt, new Date(q.startedAfter)));
  if (q.metadata)
    where.push(sql`${sandboxes.metadata} @> ${JSON.stringify(parseMetadataFilter(q.metadata))}::jsonb`);
  const order = q.order ?? 'desc';
  if (q.nextToken) {
    const cursor = parseCursor(q.nextToken);
    const at = new Date(cursor.t);
    const after =
      order === 'desc'
        ? or(lt(sandboxes.startedAt, at), and(eq(sandboxes.startedAt, at), lt(sandboxes.id, cursor.id)))
        : or(gt(sandboxes.startedAt, at), and(eq(sandboxes.startedAt, at), gt(sandboxes.id, cursor.id)));
    where.push(after as SQL);
  }
  const limit = q.limit ?? 100;
  const by =
    order === 'desc'
      ? [desc(sandboxes.startedAt), desc(sandboxes.id)]
      : [asc(sandboxes.startedAt), asc(sandboxes.id)];
  const rows = await db
    .select()
    .from(sandboxes)
    .where(and(...where))
    .orderBy(...by)
    .limit(limit + 1);
  const { page, nextToken } = keysetPage(rows, limit, (r) => r.startedAt);
  return { items: page.map(listedSandbox), nextToken };
}

/**
 * E2B's metadata filter: after normal query decoding, the whole value is URL-decoded
 * once more, split on `&` and `=`, and each key and value URL-decoded.
 */
export function parseMetadataFilter(value: string): Record<string, string> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(value);
  } catch {
    throw new InvalidRequestError('metadata filter is not URL-encoded');
  }
  const filter: Record<string, string> = {};
  for (const pair of decoded.split('&')) {
    if (!pair) continue;
    const eqAt = pair.indexOf('=');
    if (eqAt <= 0) throw new InvalidRequestError(`metadata filter "${pair}" is not key=value`);
    try {
      filter[decodeURIComponent(pair.slice(0, eqAt))] = decodeURIComponent(pair.slice(eqAt + 1));
    } catch {
      throw new InvalidRequestError(`metadata filter "${pair}" is not URL-encoded`);
    }
  }
  return filter;
}
