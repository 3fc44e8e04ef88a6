import { randomBytes } from 'node:crypto';
import { newSandboxId } from '@aiva/node';
import type { Logger } from 'pino';
import type { SandboxNode } from '../nodes/sandbox-node.js';

/**
 * Sandboxes made ahead of time, per template, so that a create only has to hand one over
 * (`SandboxNode.claim`: a new envd token, the tenant's env vars and network policy).
 * A pooled sandbox has never run anyone's code: its upper layer is fresh, and its pool
 * token stops working when it is claimed. Pooled sandboxes have no database row: they
 * are not listed, never expire, and a crashed server's are killed by the next start as
 * sandboxes the database does not know. Refilled in the background, one at a time per
 * template, while `room()` says the host has memory for one more.
 */
export class WarmPool {
  private readonly ready = new Map<string, string[]>();
  private readonly filling = new Set<string>();
  private closed = false;

  constructor(
    private readonly node: SandboxNode,
    private readonly sizes: Record<string, number>,
    private readonly room: () => boolean,
    private readonly log: Logger,
  ) {}

  start(): void {
    for (const template of Object.keys(this.sizes)) void this.fill(template);
  }

  /** How many sandboxes the pool holds now (all templates). */
  get size(): number {
    let n = 0;
    for (const ids of this.ready.values()) n += ids.length;
    return n + this.filling.size;
  }

  /** A ready sandbox of `template` taken out of the pool, if there is one; refilling starts. */
  take(template: string): string | undefined {
    const ids = this.ready.get(template);
    let id: string | undefined;
    while (ids?.length) {
      const candidate = ids.shift() as string;
      if (this.node.get(candidate)?.state === 'running') {
        id = candidate;
        break;
      }
      this.log.warn({ sandbox: candidate, template }, 'dropping a pooled sandbox that no longer runs');
      void this.node.kill(candidate).catch(() => {});
    }
    void this.fill(template);
    return id;
  }

  private async fill(template: string): Promise<void> {
    if (this.filling.has(template)) return;
    const want = this.sizes[template] ?? 0;
    const ids = this.ready.get(template) ?? [];
    this.ready.set(template, ids);
    this.filling.add(template);
    try {
      while (!this.closed && ids.length < want && this.room()) {
        const id = newSandboxId();
        try {
          await this.node.create({ id, template, accessToken: randomBytes(24).toString('hex') });
        } catch (e) {
          this.log.warn({ template, err: e }, 'could not make a pooled sandbox; retrying in 5 s');
          await new Promise((r) => setTimeout(r, 5000).unref());
          continue;
        }
        if (this.closed) {
          await this.node.kill(id).catch(() => {});
          return;
        }
        ids.push(id);
        this.log.debug({ sandbox: id, template, ready: ids.length }, 'pooled sandbox ready');
      }
    } finally {
      this.filling.delete(template);
    }
  }

  /** Stops refilling and kills the pooled sandboxes. */
  async close(): Promise<void> {
    this.closed = true;
    const ids = [...this.ready.values()].flat();
    this.ready.clear();
    await Promise.allSettled(ids.map((id) => this.node.kill(id)));
  }
}
