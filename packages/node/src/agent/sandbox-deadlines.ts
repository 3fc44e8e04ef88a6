// The node's own copy of each sandbox's end time (`sandbox.set-deadline`): the server ends
// sandboxes at their time, but a node cut off from it must not run them forever. At the
// deadline plus the grace the server allowed, the node kills the sandbox (or pauses it,
// for autoPause) itself and remembers that it ended it with reason `timeout`. With a
// `file`, the deadlines are also kept on disk, so an agent restarted while cut off from the
// server still ends its sandboxes on time.

import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

export type DeadlineAction = 'kill' | 'pause';

export interface SandboxDeadlinesOptions {
  /** Ends a sandbox whose time is up; a failure is logged by the caller's `onError`. */
  expire(sandboxId: string, action: DeadlineAction): Promise<void>;
  onError?(sandboxId: string, error: Error): void;
  now?: () => number;
  /** Where the deadlines are kept across restarts (a JSON file, rewritten on each change). */
  file?: string;
}

type SavedDeadlines = Record<string, { due: number; action: DeadlineAction }>;

interface Deadline {
  at: number;
  action: DeadlineAction;
  timer: NodeJS.Timeout;
}

/** setTimeout's limit (about 24.8 days): a later deadline is checked again then. */
const MAX_DELAY_MS = 2 ** 31 - 1;
/** How long ends by deadline are remembered (reported in snapshots). */
const ENDED_KEPT_MS = 10 * 60_000;

export class SandboxDeadlines {
  private readonly deadlines = new Map<string, Deadline>();
  private readonly ended = new Map<string, number>();

  constructor(private readonly options: SandboxDeadlinesOptions) {}

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /** Sets (or, with `at` undefined, clears) the moment a sandbox is ended: `at` + `graceMs`. */
  set(sandboxId: string, at: number | undefined, graceMs = 0, action: DeadlineAction = 'kill'): void {
    this.clear(sandboxId);
    if (at === undefined) return;
    this.arm(sandboxId, at + graceMs, action);
    this.save();
  }

  /**
   * Arms the deadlines kept in `file` by an earlier run, for the sandboxes `exists` still
   * knows (one past its time is ended at once); the others are forgotten. Answers how many.
   */
  restore(exists: (sandboxId: string) => boolean): number {
    if (!this.options.file) return 0;
    let saved: SavedDeadlines = {};
    try {
      saved = JSON.parse(readFileSync(this.options.file, 'utf8')) as SavedDeadlines;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.options.onError?.('*', e as Error);
    }
    for (const [id, d] of Object.entries(saved))
      if (exists(id) && Number.isFinite(d?.due) && (d.action === 'kill' || d.action === 'pause'))
        this.arm(id, d.due, d.action);
    this.save();
    return this.deadlines.size;
  }

  private save(): void {
    const file = this.options.file;
    if (!file) return;
    const saved: SavedDeadlines = {};
    for (const [id, d] of this.deadlines) saved[id] = { due: d.at, action: d.action };
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(`${file}.tmp`, JSON.stringify(saved));
      renameSync(`${file}.tmp`, file);
    } catch (e) {
      this.options.onError?.('*', e as Error);
    }
  }

  private arm(sandboxId: string, due: number, action: DeadlineAction): void {
    const arm = (): NodeJS.Timeout => {
      const timer = setTimeout(
        () => {
          if (this.deadlines.get(sandboxId)?.timer !== d.timer) return;
          if (due > this.now()) {
            d.timer = arm();
            return;
          }
          this.deadlines.delete(sandboxId);
          this.save();
          // Marked before the kill, whose state change its listeners hear with the reason.
          if (action === 'kill') this.ended.set(sandboxId, this.now());
          this.options.expire(sandboxId, action).catch((e: Error) => {
            this.ended.delete(sandboxId);
            this.options.onError?.(sandboxId, e);
          });
        },
        Math.min(MAX_DELAY_MS, Math.max(0, due - this.now())),
      );
      timer.unref();
      return timer;
    };
    const d: Deadline = { at: due, action, timer: undefined as unknown as NodeJS.Timeout };
    this.deadlines.set(sandboxId, d);
    d.timer = arm();
  }

  /** Forgets a sandbox's deadline (it ended, or it is paused). */
  clear(sandboxId: string): void {
    const d = this.deadlines.get(sandboxId);
    if (!d) return;
    clearTimeout(d.timer);
    this.deadlines.delete(sandboxId);
    this.save();
  }

  /** When a sandbox is due to be ended (ms since the epoch), if it has a deadline. */
  dueAt(sandboxId: string): number | undefined {
    return this.deadlines.get(sandboxId)?.at;
  }

  /** Whether the node ended this sandbox at its deadline. */
  endedByDeadline(sandboxId: string): boolean {
    return this.ended.has(sandboxId);
  }

  /** Sandboxes ended at their deadline in the last minutes, for the snapshot. */
  recentlyEnded(): { id: string; reason: 'timeout'; at: string }[] {
    const limit = this.now() - ENDED_KEPT_MS;
    for (const [id, at] of this.ended) if (at < limit) this.ended.delete(id);
    return [...this.ended].map(([id, at]) => ({ id, reason: 'timeout', at: new Date(at).toISOString() }));
  }

  close(): void {
    for (const d of this.deadlines.values()) clearTimeout(d.timer);
    this.deadlines.clear();
  }
}
