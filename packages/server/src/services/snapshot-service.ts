import { type NodeCheckpoint, newSandboxId } from '@aiva/protocol/node';
import { and, desc, eq, inArray, lt, or, type SQL } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { ForkBody, Sandbox, SnapshotInfo, SnapshotListQuery } from '../api/e2b/schemas.js';
import type { Database } from '../db/database.js';
import { snapshots } from '../db/schema.js';
import type { Nodes } from '../nodes/nodes.js';
import { ConflictError, InvalidRequestError, InvalidStateError, OperationFailedError } from './errors.js';
import { keysetPage, parseCursor } from './keyset-page.js';
import type { SnapshotSource } from './sandbox-creation.js';
import type { SandboxService } from './sandbox-service.js';
import type { Caller } from './team-service.js';

type Row = typeof snapshots.$inferSelect;

/** E2B's only tag: `name:default`. */
const TAG = 'default';
/** A snapshot's name: what E2B accepts for template aliases. */
const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
/** Forks one request may ask for. */
export const MAX_FORKS = 100;

/** One fork's outcome: its sandbox, or why it failed (the API reports the error as `{code, message}`). */
export type ForkResult = { sandbox: Sandbox } | { error: unknown };

/**
 * Persistent snapshots and forks (E2B's `POST /sandboxes/{id}/snapshots`, `GET /snapshots`,
 * `DELETE /templates/{id}`, `POST /sandboxes/{id}/fork`). A snapshot is a row here and a
 * checkpoint of the same name on the node; a sandbox made from it is an independent copy,
 * so a snapshot can be deleted while such sandboxes run. A fork is a checkpoint that
 * lives only until its copies are made.
 */
export class SnapshotService {
  constructor(
    private readonly db: Database,
    private readonly nodes: Nodes,
    private readonly sandboxes: SandboxService,
    private readonly log: Logger,
  ) {}

  /** Reconciles rows and the node's checkpoints after a restart: what only one side has goes. */
  async start(): Promise<void> {
    // A remote node's are reconciled once it reports (its stored view may be behind).
    for (const node of this.nodes.all()) if (node.link.fresh) await this.reconcile(node.id);
  }

  /**
   * Reconciles the rows of `nodeId`'s snapshots with the checkpoints it holds. A checkpoint
   * copied from another node (a snapshot restored here) is one a row of any node owns.
   */
  async reconcile(nodeId: string): Promise<void> {
    const node = this.nodes.of(nodeId);
    const rows = await this.db.select().from(snapshots).where(eq(snapshots.nodeId, node.id));
    const onNode = new Set(await node.checkpoints());
    for (const row of rows) {
      if (onNode.delete(row.id)) continue;
      this.log.warn({ snapshot: row.id }, 'removing a snapshot whose checkpoint is gone');
      await this.db.delete(snapshots).where(eq(snapshots.id, row.id));
    }
    if (onNode.size > 0) {
      const owned = await this.db
        .select({ id: snapshots.id })
        .from(snapshots)
        .where(inArray(snapshots.id, [...onNode]));
      for (const { id } of owned) onNode.delete(id);
    }
    for (const name of onNode) {
      this.log.warn(
        { checkpoint: name },
        'removing a checkpoint no snapshot owns (an interrupted fork or snapshot)',
      );
      await node.removeCheckpoint(name);
    }
  }

  /** The recipe templates of every node (a snapshot may not take one's name). */
  private async templateNames(): Promise<string[]> {
    return (await Promise.all(this.nodes.all().map((n) => n.templates().catch(() => [])))).flat();
  }

  private info(row: Row): SnapshotInfo {
    const ref = `${row.name ?? row.id}:${TAG}`;
    return { snapshotID: ref, names: row.name ? [ref] : [] };
  }

  /** Saves the team's sandbox `sandboxId` as a new snapshot (the sandbox runs on). */
  async create(caller: Caller, sandboxId: string, name?: string): Promise<SnapshotInfo> {
    if (name !== undefined && !NAME_PATTERN.test(name))
      throw new InvalidRequestError(
        `snapshot name "${name}" is not 1–63 lower-case letters, digits, - and _`,
      );
    const source = await this.sandboxes.row(caller, sandboxId);
    if (name !== undefined && (await this.templateNames()).includes(name))
      throw new ConflictError(`${name} is the name of a template`);
    if (name !== undefined && (await this.byRef(caller, name))) throw nameTaken(name);
    const id = newSandboxId();
    const node = this.sandboxes.nodeOfSandbox(sandboxId);
    const checkpoint = await this.save(sandboxId, id);
    try {
      const [row] = await this.db
        .insert(snapshots)
        .values({
          id,
          teamId: caller.teamId,
          name: name ?? null,
          sandboxId,
          templateId: source.templateId,
          nodeId: node.id,
          memory: checkpoint.memory,
          sizeBytes: checkpoint.bytes,
          // Set here, in milliseconds like list cursors (the database's now() has microseconds).
          createdAt: new Date(),
        })
        .returning();
      if (!row) throw new Error('the snapshot row was not stored');
      this.log.info({ snapshot: id, sandbox: sandboxId, name, bytes: checkpoint.bytes }, 'snapshot saved');
      return this.info(row);
    } catch (e) {
      await node.removeCheckpoint(id);
      // Two requests for the same name at once: the unique index took the other one.
      if (name !== undefined && (await this.byRef(caller, name))) throw nameTaken(name);
      throw e;
    }
  }

  /**
   * The team's snapshot that `ref` names: its id or name, either with the tag
   * (`name:default`) and with a namespace before a slash (`team/name`).
   */
  async byRef(caller: Caller, ref: string): Promise<Row | undefined> {
    let key = ref.slice(ref.lastIndexOf('/') + 1);
    const colon = key.lastIndexOf(':');
    if (colon >= 0) {
      if (key.slice(colon + 1) !== TAG) return undefined;
      key = key.slice(0, colon);
    }
    if (!NAME_PATTERN.test(key)) return undefined;
    const [row] = await this.db
      .select()
      .from(snapshots)
      .where(
        and(eq(snapshots.teamId, caller.teamId), or(eq(snapshots.id, key), eq(snapshots.name, key)) as SQL),
      )
      .limit(1);
    return row;
  }

  /** What a create of `templateID` starts from when it names one of the team's snapshots, not a template. */
  async source(caller: Caller, templateID: string): Promise<SnapshotSource | undefined> {
    if ((await this.templateNames()).includes(templateID)) return undefined;
    const row = await this.byRef(caller, templateID);
    return row && { checkpoint: row.id, nodeId: row.nodeId, templateId: row.templateId, alias: templateID };
  }

  /** The team's snapshots, newest first, one page at a time. */
  async list(caller: Caller, q: SnapshotListQuery): Promise<{ items: SnapshotInfo[]; nextToken?: string }> {
    const where: SQL[] = [eq(snapshots.teamId, caller.teamId)];
    if (q.sandboxID) where.push(eq(snapshots.sandboxId, q.sandboxID));
    if (q.name) {
      const row = await this.byRef(caller, q.name);
      if (!row) return { items: [] };
      where.push(eq(snapshots.id, row.id));
    }
    if (q.nextToken) {
      const cursor = parseCursor(q.nextToken);
      const at = new Date(cursor.t);
      where.push(
        or(lt(snapshots.createdAt, at), and(eq(snapshots.createdAt, at), lt(snapshots.id, cursor.id))) as SQL,
      );
    }
    const limit = q.limit ?? 100;
    const rows = await this.db
      .select()
      .from(snapshots)
      .where(and(...where))
      .orderBy(desc(snapshots.createdAt), desc(snapshots.id))
      .limit(limit + 1);
    const { page, nextToken } = keysetPage(rows, limit, (r) => r.createdAt);
    return { items: page.map((r) => this.info(r)), nextToken };
  }

  /** Deletes the team's snapshot `ref`; false if there is none. Sandboxes made from it run on. */
  async remove(caller: Caller, ref: string): Promise<boolean> {
    const row = await this.byRef(caller, ref);
    if (!row) return false;
    await this.removeEverywhere(row.id, row.nodeId);
    await this.db.delete(snapshots).where(eq(snapshots.id, row.id));
    this.log.info({ snapshot: row.id }, 'snapshot deleted');
    return true;
  }

  /**
   * Forks the team's sandbox: saves it once (it runs on, its id and end time unchanged)
   * and makes `count` sandboxes from that, each succeeding or failing on its own. They
   * inherit the source's template, metadata, network policy and lifecycle.
   */
  async fork(caller: Caller, sandboxId: string, body: ForkBody): Promise<ForkResult[]> {
    // E2B's checks and words.
    const count = body.count ?? 1;
    if (count < 1) throw new InvalidRequestError('Count must be at least 1');
    if (count > MAX_FORKS) throw new InvalidRequestError(`Count cannot be greater than ${MAX_FORKS}`);
    // The source runs on and holds one of the team's places.
    const most = await this.sandboxes.teamLimit(caller.teamId);
    if (count >= most)
      throw new InvalidRequestError(
        `Count must be lower than the maximum number of concurrent sandboxes (${most})`,
      );
    const source = await this.sandboxes.row(caller, sandboxId);
    const checkpoint = `fork-${newSandboxId()}`;
    const node = this.sandboxes.nodeOfSandbox(sandboxId);
    await this.save(sandboxId, checkpoint);
    try {
      const results = await Promise.allSettled(
        Array.from({ length: count }, () =>
          this.sandboxes.create(
            caller,
            {
              templateID: source.templateId,
              timeout: body.timeout ?? 15,
              metadata: source.metadata,
              allow_internet_access: source.allowInternetAccess ?? undefined,
              network: source.network ?? undefined,
              autoPause: source.onTimeout === 'pause',
              autoResume: { enabled: source.autoResume },
              autoPauseMemory: source.autoPauseMemory,
            },
            15,
            {
              snapshot: {
                checkpoint,
                nodeId: node.id,
                templateId: source.templateId,
                alias: source.alias ?? source.templateId,
              },
            },
          ),
        ),
      );
      return results.map((r) => (r.status === 'fulfilled' ? { sandbox: r.value } : { error: r.reason }));
    } finally {
      // Each fork has its own copy of what it needs.
      await this.removeEverywhere(checkpoint, node.id);
    }
  }

  /**
   * Removes checkpoint `name` from its node, from every other node that copied it (their
   * snapshots list it) and from the server's store. A node that cannot be reached keeps
   * its copy until it reports again (`reconcile`).
   */
  private async removeEverywhere(name: string, home: string): Promise<void> {
    const copies = await Promise.all(
      this.nodes.all().map(async (n) => {
        if (n.id === home) return undefined;
        const s = await n.link.snapshot().catch(() => undefined);
        return s?.checkpoints.some((c) => c.name === name) ? n : undefined;
      }),
    );
    await Promise.all(
      [this.nodes.of(home), ...copies].map((n) =>
        n
          ?.removeCheckpoint(name)
          .catch((e: Error) =>
            this.log.warn(
              { checkpoint: name, node: n.id, err: e.message },
              'a copy of a checkpoint stays for now',
            ),
          ),
      ),
    );
    await this.nodes.artefacts?.forgetCheckpoint(name);
  }

  /**
   * Checkpoints the sandbox as `name`. A state that forbids it is an InvalidStateError that
   * says so; the node's refusal of the request (InvalidRequestError, ConflictError) goes as it is; any other
   * failure is logged and reported as an OperationFailedError.
   */
  private async save(sandboxId: string, name: string): Promise<NodeCheckpoint> {
    try {
      return await this.sandboxes.nodeOfSandbox(sandboxId).checkpoint(sandboxId, name);
    } catch (e) {
      if (e instanceof InvalidStateError)
        throw new InvalidStateError(`sandbox ${sandboxId} cannot be saved now: ${e.message}`);
      // As given: a refused request, and a microVM that holds volumes (409).
      if (e instanceof InvalidRequestError || e instanceof ConflictError) throw e;
      this.log.error({ sandbox: sandboxId, err: e }, 'saving a sandbox failed');
      throw new OperationFailedError('the sandbox could not be saved', e);
    }
  }
}

const nameTaken = (name: string) => new ConflictError(`your team already has a snapshot named ${name}`);
