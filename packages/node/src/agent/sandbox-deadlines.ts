// The node's own copy of each sandbox's end time (`sandbox.set-deadline`): the server ends
// sandboxes at their time, but a node cut off from it must not run them forever. At the
// deadline plus the grace the server allowed, the node kills the sandbox (or pauses it,
// for autoPause) itself and remembers that it ended it with reason `timeout`.

export type DeadlineAction = 'kill' | 'pause';

export interface SandboxDeadlinesOptions {
  /** Ends a sandbox whose time is up; a failure is logged by the caller's `onError`. */
  expire(sandboxId: string, action: DeadlineAction): Promise<void>;
  onError?(sandboxId: string, error: Error): void;
  now?: () => number;
}

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
    const due = at + graceMs;
    const arm = (): NodeJS.Timeout => {
      const timer = setTimeout(
        () => {
          if (this.deadlines.get(sandboxId)?.timer !== d.timer) return;
          if (due > this.now()) {
            d.timer = arm();
            return;
          }
          this.deadlines.delete(sandboxId);
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
    if (d) clearTimeout(d.timer);
    this.deadlines.delete(sandboxId);
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
