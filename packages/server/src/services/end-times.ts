import type { Logger } from 'pino';
import type { NodeClient } from '../nodes/node-client.js';
import type { ServerReplica } from '../replicas/server-replica.js';
import type { LiveSandbox } from './live-sandboxes.js';
import { NodeDeadlines } from './node-deadlines.js';
import { SandboxExpiry } from './sandbox-expiry.js';

/**
 * The end time of a sandbox that has none (a named environment's): the last second of
 * year 9999, which E2B's `endAt` shows as is. Expiry never reaches it, and it is not sent
 * to the node as a deadline.
 */
export const NEVER = new Date('9999-12-31T23:59:59.000Z');

/** Whether an end time (ms) is NEVER: the sandbox has no end. */
export function endsNever(endAtMs: number): boolean {
  return endAtMs >= NEVER.getTime();
}

/**
 * The end times of live sandboxes: enforced by the server (SandboxExpiry) and copied to
 * their nodes (NodeDeadlines), which end a sandbox by themselves when cut off. Among
 * server replicas, by the leader alone.
 */
export class EndTimes {
  private readonly expiry: SandboxExpiry;
  private readonly deadlines: NodeDeadlines;

  constructor(
    live: () => Iterable<LiveSandbox>,
    act: { pause(s: LiveSandbox): Promise<void>; end(id: string): Promise<void> },
    nodeOf: (id: string) => NodeClient,
    log: Logger,
  ) {
    this.expiry = new SandboxExpiry(live, act, log);
    this.deadlines = new NodeDeadlines(live, nodeOf, log);
  }

  /** Starts enforcing them: now, or whenever `replica` leads. */
  start(replica?: ServerReplica): void {
    const enforce = (on: boolean) => {
      if (on) {
        this.expiry.start();
        this.deadlines.start();
      } else this.stop();
    };
    replica?.on('leader', enforce);
    enforce(replica ? replica.leader : true);
  }

  stop(): void {
    this.expiry.stop();
    this.deadlines.stop();
  }
}
