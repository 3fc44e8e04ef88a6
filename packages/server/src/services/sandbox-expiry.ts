import type { Logger } from 'pino';
import type { LiveSandbox } from './live-sandboxes.js';

/** What a live sandbox's end time asks for at `now`: nothing yet, a pause (autoPause) or its end. */
export function expiryAction(s: LiveSandbox, now: number): 'pause' | 'end' | undefined {
  if (s.state === 'creating' || s.endAt > now) return undefined;
  if (s.onTimeout === 'pause') return s.state === 'running' ? 'pause' : undefined;
  return 'end';
}

/**
 * Enforces end times: every `intervalMs` (250 ms, so a sandbox is gone within a second of
 * its end), a sandbox whose time is up is ended, or paused if it was made with autoPause.
 * One action per sandbox at a time.
 */
export class SandboxExpiry {
  private timer: NodeJS.Timeout | undefined;
  private readonly expiring = new Set<string>();

  constructor(
    private readonly live: () => Iterable<LiveSandbox>,
    private readonly act: { pause(s: LiveSandbox): Promise<void>; end(id: string): Promise<void> },
    private readonly log: Logger,
    private readonly intervalMs = 250,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.check(Date.now()), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Ends (or pauses) the sandboxes whose time is up at `now`. */
  check(now: number): void {
    for (const s of this.live()) {
      const action = this.expiring.has(s.id) ? undefined : expiryAction(s, now);
      if (!action) continue;
      this.expiring.add(s.id);
      void (action === 'pause' ? this.act.pause(s) : this.act.end(s.id))
        .catch((e: Error) => this.log.error({ sandbox: s.id, err: e }, 'ending an expired sandbox failed'))
        .finally(() => this.expiring.delete(s.id));
    }
  }
}
