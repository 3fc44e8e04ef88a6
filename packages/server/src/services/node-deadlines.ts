import type { Logger } from 'pino';
import type { NodeClient } from '../nodes/node-client.js';
import { endsNever } from './end-times.js';
import type { LiveSandbox } from './live-sandboxes.js';

/** How long after a sandbox's end time its node ends it by itself: the server acts first. */
export const NODE_DEADLINE_GRACE_S = 30;

/**
 * Keeps each node's copy of its sandboxes' end times (`sandbox.set-deadline`) equal to the
 * server's: every `intervalMs` it sends the end time of each running sandbox whose end time
 * (or timeout action) changed since it was last sent — at create, on E2B's `POST
 * /sandboxes/{id}/timeout`, a connect or refresh that moves it, a resume. A node cut off
 * from the server then still ends the sandbox, `graceS` after its time. A send that fails
 * is tried again on the next pass; a paused sandbox's is cleared by the node itself.
 */
export class NodeDeadlines {
  /** What was last sent per sandbox: `endAt|action`. */
  private readonly sent = new Map<string, string>();
  private readonly sending = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly live: () => Iterable<LiveSandbox>,
    private readonly nodeOf: (id: string) => NodeClient,
    private readonly log: Logger,
    private readonly intervalMs = 1000,
    private readonly graceS = NODE_DEADLINE_GRACE_S,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.sync(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops sending (another replica leads now: what it sends, this one no longer knows). */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.sent.clear();
  }

  /** Sends the end times that changed; forgets sandboxes that are no longer live. */
  sync(): void {
    const seen = new Set<string>();
    for (const s of this.live()) {
      seen.add(s.id);
      // A sandbox without an end (an environment's) has no deadline on its node either.
      if (s.state !== 'running' || endsNever(s.endAt)) {
        // Paused: the node dropped its deadline; a resume is sent afresh.
        this.sent.delete(s.id);
        continue;
      }
      const key = `${s.endAt}|${s.onTimeout}`;
      if (this.sent.get(s.id) === key || this.sending.has(s.id)) continue;
      this.sending.add(s.id);
      this.nodeOf(s.id)
        .setDeadline(s.id, new Date(s.endAt), { graceSeconds: this.graceS, onDeadline: s.onTimeout })
        .then(
          () => this.sent.set(s.id, key),
          (e: Error) =>
            this.log.debug({ sandbox: s.id, err: e.message }, 'sending a deadline to the node failed'),
        )
        .finally(() => this.sending.delete(s.id));
    }
    for (const id of this.sent.keys()) if (!seen.has(id)) this.sent.delete(id);
  }
}
