import { EventEmitter } from 'node:events';
import {
  type BuildLogLine,
  type NodeCommand,
  type NodeCommandKind,
  type NodeCommandOutcome,
  type NodeFailure,
  resultProblem,
} from '@aiva/protocol/node';
import { and, eq, inArray, lt, or, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { nodeCommands } from '../db/cluster-schema.js';
import type { Database } from '../db/database.js';
import type { ServerReplica } from '../replicas/server-replica.js';

// Commands for remote nodes go through the database (`node_commands`): whichever server
// replica a node polls delivers them, whichever replica a node posts an outcome to
// applies it, and the row's state makes an outcome posted twice applied once.

/** A command delivered but not answered this long is delivered again (the node runs it once). */
const REDELIVER_AFTER_MS = 30_000;
/** How often a replica looks for work it was not told about (another replica's). */
const POLL_MS = 1000;
/** How long a command may wait for its node when it gives no deadline. */
const DEFAULT_DEADLINE_MS = 15 * 60_000;

export type Verdict = 'accepted' | 'duplicate' | 'rejected';

type Row = typeof nodeCommands.$inferSelect;

export class NodeCommandQueue {
  /** `issued:<node>` and `done:<command>` and `progress:<command>` within this replica. */
  private readonly events = new EventEmitter().setMaxListeners(0);

  constructor(
    private readonly db: Database,
    private readonly log: Logger,
    /** With replicas, their commands and outcomes wake this one's waiters at once (else within POLL_MS). */
    private readonly replica?: ServerReplica,
  ) {
    replica?.on('command-issued', (nodeId: string) => this.events.emit(`issued:${nodeId}`));
    replica?.on('command-done', (id: string) => this.events.emit(`done:${id}`));
    replica?.on('progress', (p: { commandId?: string; lines?: BuildLogLine[] }) => {
      for (const line of p.lines ?? []) this.events.emit(`progress:${p.commandId}`, line);
    });
  }

  /** Queues `command` for `nodeId` and waits for its outcome (or its deadline). */
  async send(
    nodeId: string,
    command: NodeCommand,
    progress?: (line: BuildLogLine) => void,
  ): Promise<NodeCommandOutcome> {
    const deadline = command.deadline
      ? new Date(command.deadline)
      : new Date(Date.now() + DEFAULT_DEADLINE_MS);
    const payload = command.payload as Record<string, unknown>;
    const onProgress = (line: BuildLogLine) => progress?.(line);
    if (progress) this.events.on(`progress:${command.id}`, onProgress);
    try {
      await this.db.insert(nodeCommands).values({
        id: command.id,
        nodeId,
        sandboxId: typeof payload.sandboxId === 'string' ? payload.sandboxId : null,
        kind: command.kind,
        payload,
        deadline,
        createdAt: new Date(command.issuedAt),
      });
      this.events.emit(`issued:${nodeId}`);
      return await this.outcome(command.id, deadline);
    } finally {
      this.events.off(`progress:${command.id}`, onProgress);
    }
  }

  private async outcome(id: string, deadline: Date): Promise<NodeCommandOutcome> {
    for (;;) {
      const [row] = await this.db.select().from(nodeCommands).where(eq(nodeCommands.id, id));
      if (!row) throw new Error(`command ${id} vanished`);
      if (row.state === 'done') return { commandId: id, ok: true, data: row.result ?? {} };
      if (row.state === 'failed') return { commandId: id, ok: false, error: failureOfRow(row) };
      if (Date.now() > deadline.getTime()) {
        const error: NodeFailure = {
          code: 'DEADLINE_EXCEEDED',
          message: `the node did not answer ${row.kind} by its deadline`,
        };
        const [expired] = await this.db
          .update(nodeCommands)
          .set({
            state: 'failed',
            errorCode: error.code,
            result: { message: error.message },
            doneAt: new Date(),
          })
          .where(and(eq(nodeCommands.id, id), inArray(nodeCommands.state, ['pending', 'delivered'])))
          .returning();
        if (expired) return { commandId: id, ok: false, error };
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.events.off(`done:${id}`, done);
          resolve();
        };
        const timer = setTimeout(done, POLL_MS);
        this.events.on(`done:${id}`, done);
      });
    }
  }

  /**
   * The commands for `nodeId` that are due — new ones, and ones delivered long ago and not
   * answered — marked delivered, in the order they were issued; waits up to `waitMs` for one.
   */
  async take(nodeId: string, waitMs: number, signal: AbortSignal): Promise<NodeCommand[]> {
    const until = Date.now() + waitMs;
    for (;;) {
      const rows = await this.db
        .update(nodeCommands)
        .set({ state: 'delivered', deliveredAt: new Date() })
        .where(
          and(
            eq(nodeCommands.nodeId, nodeId),
            or(
              eq(nodeCommands.state, 'pending'),
              and(
                eq(nodeCommands.state, 'delivered'),
                lt(nodeCommands.deliveredAt, new Date(Date.now() - REDELIVER_AFTER_MS)),
              ),
            ),
            sql`${nodeCommands.deadline} > now()`,
          ),
        )
        .returning();
      if (rows.length > 0)
        return rows
          .sort((a, b) => a.seq - b.seq)
          .map((r) => ({
            id: r.id,
            kind: r.kind as NodeCommandKind,
            issuedAt: r.createdAt.toISOString(),
            deadline: r.deadline.toISOString(),
            payload: r.payload,
          })) as NodeCommand[];
      const left = until - Date.now();
      if (left <= 0 || signal.aborted) return [];
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.events.off(`issued:${nodeId}`, done);
          signal.removeEventListener('abort', done);
          resolve();
        };
        const timer = setTimeout(done, Math.min(left, POLL_MS));
        this.events.on(`issued:${nodeId}`, done);
        signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /**
   * Applies outcomes a node posted: each one once, and only to that node's own commands. An
   * outcome for another node's command, for none, or with data its kind does not allow is
   * rejected and logged (a replayed or forged result).
   */
  async complete(
    nodeId: string,
    outcomes: NodeCommandOutcome[],
  ): Promise<{ commandId: string; verdict: Verdict }[]> {
    const verdicts: { commandId: string; verdict: Verdict }[] = [];
    for (const o of outcomes)
      verdicts.push({ commandId: o.commandId, verdict: await this.completeOne(nodeId, o) });
    return verdicts;
  }

  private async completeOne(nodeId: string, o: NodeCommandOutcome): Promise<Verdict> {
    const [row] = /^[0-9a-f-]{36}$/.test(o.commandId)
      ? await this.db.select().from(nodeCommands).where(eq(nodeCommands.id, o.commandId))
      : [];
    if (!row || row.nodeId !== nodeId) {
      this.log.warn(
        { node: nodeId, command: o.commandId, owner: row?.nodeId },
        row ? "refused an outcome for another node's command" : 'refused an outcome for no command',
      );
      return 'rejected';
    }
    if (row.state === 'done' || row.state === 'failed') return 'duplicate';
    const wrong = o.ok ? resultProblem(row.kind as NodeCommandKind, o.data) : undefined;
    if (wrong) {
      this.log.warn(
        { node: nodeId, command: o.commandId, problem: wrong },
        'refused an outcome outside the contract',
      );
      return 'rejected';
    }
    const [applied] = await this.db
      .update(nodeCommands)
      .set(
        o.ok
          ? { state: 'done', result: (o.data ?? {}) as Record<string, unknown>, doneAt: new Date() }
          : {
              state: 'failed',
              errorCode: o.error.code,
              result: { message: o.error.message, retryable: o.error.retryable, details: o.error.details },
              doneAt: new Date(),
            },
      )
      .where(and(eq(nodeCommands.id, o.commandId), inArray(nodeCommands.state, ['pending', 'delivered'])))
      .returning({ id: nodeCommands.id });
    if (!applied) return 'duplicate';
    this.events.emit(`done:${o.commandId}`);
    return 'accepted';
  }

  /** A running command's log lines, to whoever waits for it (in this replica or another); false if it is not the node's running command. */
  async progress(nodeId: string, commandId: string, lines: BuildLogLine[]): Promise<boolean> {
    const here = this.events.listenerCount(`progress:${commandId}`) > 0;
    if (!here && !this.replica) return false;
    const [row] = await this.db
      .select({ nodeId: nodeCommands.nodeId, state: nodeCommands.state })
      .from(nodeCommands)
      .where(eq(nodeCommands.id, commandId));
    if (row?.nodeId !== nodeId || row.state !== 'delivered') return false;
    if (here) for (const line of lines) this.events.emit(`progress:${commandId}`, line);
    // The replica that waits for it may be another one.
    else await this.replica?.progress(commandId, lines);
    return true;
  }

  /** Whether a build `nodeId` is running (delivered, not answered) reads `team`'s file `hash`. */
  async buildNeeds(nodeId: string, team: string, hash: string): Promise<boolean> {
    const rows = await this.db
      .select({ payload: nodeCommands.payload })
      .from(nodeCommands)
      .where(
        and(
          eq(nodeCommands.nodeId, nodeId),
          eq(nodeCommands.kind, 'template.build'),
          eq(nodeCommands.state, 'delivered'),
          sql`${nodeCommands.payload}->>'filesTeam' = ${team}`,
        ),
      );
    return rows.some(({ payload }) => {
      const p = payload as { steps?: { filesHash?: string }[]; base?: { archiveHash?: string } };
      return p.base?.archiveHash === hash || (p.steps ?? []).some((s) => s.filesHash === hash);
    });
  }

  /** Forgets answered commands older than `ms`. */
  async prune(ms: number): Promise<void> {
    await this.db
      .delete(nodeCommands)
      .where(
        and(
          inArray(nodeCommands.state, ['done', 'failed']),
          lt(nodeCommands.doneAt, new Date(Date.now() - ms)),
        ),
      );
  }
}

function failureOfRow(row: Row): NodeFailure {
  const r = (row.result ?? {}) as {
    message?: string;
    retryable?: boolean;
    details?: Record<string, unknown>;
  };
  return {
    code: (row.errorCode ?? 'INTERNAL') as NodeFailure['code'],
    message: r.message ?? 'the command failed',
    ...(r.retryable ? { retryable: true } : {}),
    ...(r.details ? { details: r.details } : {}),
  };
}
