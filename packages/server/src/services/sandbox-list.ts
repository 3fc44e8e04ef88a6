import { and, asc, count, desc, eq, gt, gte, inArray, lt, or, type SQL, sql } from 'drizzle-orm';
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
 * A team's sandboxes (or every team's) with E2B's filters (states, template or alias, started at or after,
 * metadata), ordered by start time, one keyset page at a time; with running ones asked
 * for, how many running sandboxes match in all (E2B's `X-Total-Running`).
 */
export async function listSandboxes(
  db: Database,
  /** undefined: every team's (the operator's view), each item with its `teamID`. */
  teamId: string | undefined,
  q: ListQuery,
): Promise<{ items: ListedSandbox[]; nextToken?: string; totalRunning?: number }> {
  const states: ApiState[] = [];
  for (const s of (q.state ?? 'running,paused').split(',').map((s) => s.trim())) {
    if (!isApiState(s)) throw new InvalidRequestError(`state "${s}" is not running or paused`);
    states.push(s);
  }
  const filters: SQL[] = teamId === undefined ? [] : [eq(sandboxes.teamId, teamId)];
  if (q.template) {
    // As E2B: a sandbox records its template, not the tag it was made from.
    if (q.template.includes(':'))
      throw new InvalidRequestError(
        'Invalid template: tags are not supported here because sandboxes are not tag-scoped',
      );
    filters.push(or(eq(sandboxes.templateId, q.template), eq(sandboxes.alias, q.template)) as SQL);
  }
  // At or after, as E2B: a sandbox's own startedAt given back lists it too.
  if (q.startedAfter) filters.push(gte(sandboxes.startedAt, new Date(q.startedAfter)));
  if (q.metadata)
    filters.push(sql`${sandboxes.metadata} @> ${JSON.stringify(parseMetadataFilter(q.metadata))}::jsonb`);
  const where = [...filters, inArray(sandboxes.state, states)];
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
  let totalRunning: number | undefined;
  if (states.includes('running')) {
    const [row] = await db
      .select({ n: count() })
      .from(sandboxes)
      .where(and(...filters, eq(sandboxes.state, 'running')));
    totalRunning = row?.n ?? 0;
  }
  const items = page.map((r) =>
    teamId === undefined ? { ...listedSandbox(r), teamID: r.teamId } : listedSandbox(r),
  );
  return { items, nextToken, totalRunning };
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
