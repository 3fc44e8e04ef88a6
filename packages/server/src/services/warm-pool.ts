import { randomBytes } from 'node:crypto';
import { newSandboxId } from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { NodeClient } from '../nodes/node-client.js';
import { type ResolvedTemplate, startsFrom } from './template-catalog.js';

/** One `--warm-pool` entry: the template as the operator named it, and its ready sandboxes. */
interface PoolEntry {
  ref: string;
  want: number;
  /** What its sandboxes start from (`startsFrom`), once the name resolved. */
  startsFrom?: string;
  templateId?: string;
  ids: string[];
  /** The last reason it could not be filled (logged once, not on every retry). */
  problem?: string;
}

const RETRY_MS = 5000;

/**
 * Sandboxes made ahead of time, per template, so that a create only has to hand one over
 * (`NodeClient.claim`: a new envd token, the tenant's env vars and network policy).
 * A template is a recipe (`base`) or a built one, named by id or name with a tag; a
 * create takes a pooled sandbox only if it starts from the very same build. When the
 * name's build changes (a new build, a moved tag, a delete: `changed`), the old build's
 * sandboxes are killed and new ones made.
 *
 * A pooled sandbox has never run anyone's code: its upper layer is fresh, and its pool
 * token stops working when it is claimed. Pooled sandboxes have no database row: they
 * are not listed, never expire, and a crashed server's are killed by the next start as
 * sandboxes the database does not know. Refilled in the background, one at a time per
 * entry, while `room()` says the host has memory for one more.
 */
export class WarmPool {
  private readonly entries: PoolEntry[];
  private readonly filling = new Set<PoolEntry>();
  private readonly retries = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(
    readonly node: NodeClient,
    sizes: Record<string, number>,
    private readonly resolve: (ref: string) => Promise<ResolvedTemplate | undefined>,
    private readonly room: () => boolean,
    private readonly log: Logger,
  ) {
    this.entries = Object.entries(sizes)
      .filter(([, want]) => want > 0)
      .map(([ref, want]) => ({ ref, want, ids: [] }));
  }

  start(): void {
    for (const e of this.entries) void this.fill(e);
  }

  /** How many sandboxes the pool holds now (all templates). */
  get size(): number {
    let n = 0;
    for (const e of this.entries) n += e.ids.length;
    return n + this.filling.size;
  }

  /**
   * A ready sandbox that starts from `from` (`startsFrom` of the create's template) taken
   * out of the pool, if there is one; refilling starts.
   */
  take(from: string): string | undefined {
    const entry = this.entries.find((e) => e.startsFrom === from && e.ids.length > 0);
    if (!entry) return undefined;
    let id: string | undefined;
    while (entry.ids.length) {
      const candidate = entry.ids.shift() as string;
      if (this.node.get(candidate)?.state === 'running') {
        id = candidate;
        break;
      }
      this.log.warn(
        { sandbox: candidate, template: entry.ref },
        'dropping a pooled sandbox that no longer runs',
      );
      void this.node.kill(candidate).catch(() => {});
    }
    void this.fill(entry);
    return id;
  }

  /**
   * What `templateId` starts may have changed: entries of it (and those not resolved yet)
   * resolve again; sandboxes of a build they no longer name are killed before this returns.
   */
  async changed(templateId: string): Promise<void> {
    const affected = this.entries.filter((e) => !e.startsFrom || e.templateId === templateId);
    await Promise.all(affected.map((e) => this.refresh(e)));
    for (const e of affected) void this.fill(e);
  }

  /** Resolves the entry's name again (killing the sandboxes of a build it no longer names); undefined if it does not resolve, the reason logged once. */
  private async refresh(e: PoolEntry): Promise<ResolvedTemplate | undefined> {
    let resolved: ResolvedTemplate | undefined;
    let problem: string | undefined;
    try {
      resolved = await this.resolve(e.ref);
      if (!resolved) problem = `template "${e.ref}" does not exist`;
    } catch (err) {
      problem = (err as Error).message;
    }
    const from = resolved && startsFrom(resolved);
    if (e.startsFrom !== from && e.ids.length > 0) {
      const stale = e.ids.splice(0);
      this.log.info(
        { template: e.ref, sandboxes: stale.length },
        'the pooled template changed; replacing its sandboxes',
      );
      await Promise.allSettled(stale.map((id) => this.node.kill(id)));
    }
    e.startsFrom = from;
    e.templateId = resolved?.templateId;
    if (problem && problem !== e.problem)
      this.log.warn(
        { template: e.ref },
        `the warm pool cannot fill: ${problem}; it tries again when the template changes`,
      );
    e.problem = problem;
    return resolved;
  }

  private async fill(e: PoolEntry): Promise<void> {
    if (this.filling.has(e) || this.closed) return;
    this.filling.add(e);
    let resolved: ResolvedTemplate | undefined;
    try {
      resolved = await this.refresh(e);
      if (!resolved) return;
      while (!this.closed && e.ids.length < e.want && this.room() && e.startsFrom === startsFrom(resolved)) {
        const id = newSandboxId();
        try {
          await this.node.create({
            id,
            template: resolved.node,
            accessToken: randomBytes(24).toString('hex'),
          });
        } catch (err) {
          this.log.warn(
            { template: e.ref, err },
            `could not make a pooled sandbox; retrying in ${RETRY_MS / 1000} s`,
          );
          this.retryLater(e);
          return;
        }
        if (this.closed || e.startsFrom !== startsFrom(resolved)) {
          await this.node.kill(id).catch(() => {});
          return;
        }
        e.ids.push(id);
        this.log.debug({ sandbox: id, template: e.ref, ready: e.ids.length }, 'pooled sandbox ready');
      }
    } finally {
      this.filling.delete(e);
    }
    // The name moved to another build while this filled (`changed`): fill with that one.
    if (!this.closed && resolved && e.startsFrom && e.startsFrom !== startsFrom(resolved)) void this.fill(e);
  }

  private retryLater(e: PoolEntry): void {
    const t = setTimeout(() => {
      this.retries.delete(t);
      void this.fill(e);
    }, RETRY_MS);
    t.unref();
    this.retries.add(t);
  }

  /** Stops refilling and kills the pooled sandboxes. */
  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.retries) clearTimeout(t);
    const ids = this.entries.flatMap((e) => e.ids.splice(0));
    await Promise.allSettled(ids.map((id) => this.node.kill(id)));
  }
}
