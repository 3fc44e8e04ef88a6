import type { NodeExecutor, NodeSnapshotter } from '@aiva/node';
import {
  type BuildLogLine,
  commandProblem,
  type NodeCommand,
  type NodeCommandOutcome,
  NodeCommandOutcomeSchema,
  type NodeSandbox,
  type NodeSnapshot,
  NodeSnapshotSchema,
  resultProblem,
} from '@aiva/protocol/node';
import { Value } from 'typebox/value';
import type { NodeLink } from './node-link.js';

/** The commands after which a cached snapshot's checkpoints or images may be out of date. */
const CHANGES_ARTEFACTS = new Set<string>([
  'sandbox.checkpoint',
  'checkpoint.remove',
  'template.build',
  'layers.remove',
]);

/** Through JSON, as a command and its outcome would go over a connection. */
function wire<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/**
 * The node of this host, in the server's process (`aiva up`): commands go to its
 * executor as function calls, but only as what the contract allows. Each command and
 * outcome is passed through JSON and checked against the contract's schemas, so what
 * works here works with a node on another host.
 */
export class InProcessNodeLink implements NodeLink {
  readonly fresh = true;
  /** The last snapshot, reused for a second: placement and template lookups ask often. */
  private cached: { at: number; snapshot: Promise<NodeSnapshot> } | undefined;

  constructor(
    readonly id: string,
    private readonly executor: NodeExecutor,
    private readonly snapshotter: NodeSnapshotter,
  ) {}

  async send(command: NodeCommand, progress?: (line: BuildLogLine) => void): Promise<NodeCommandOutcome> {
    // What changes the node's artefacts (checkpoints, images) shows in the next snapshot;
    // creates and kills do not (the sandbox view is the executor's own, never cached).
    if (CHANGES_ARTEFACTS.has(command.kind)) this.cached = undefined;
    const sent = wire(command);
    const problem = commandProblem(sent);
    if (problem) throw new Error(`the server made a command the node contract does not allow: ${problem}`);
    const outcome = wire(
      await this.executor.execute(sent, { progress: progress && ((l) => progress(wire(l))) }),
    );
    const wrong = !Value.Check(NodeCommandOutcomeSchema, outcome)
      ? 'not an outcome'
      : outcome.ok
        ? resultProblem(command.kind, outcome.data)
        : undefined;
    if (wrong) throw new Error(`the node answered ${command.kind} outside its contract: ${wrong}`);
    return outcome;
  }

  snapshot(): Promise<NodeSnapshot> {
    if (!this.cached || Date.now() - this.cached.at > 1000) {
      const snapshot = this.take();
      this.cached = { at: Date.now(), snapshot };
      snapshot.catch(() => {
        if (this.cached?.snapshot === snapshot) this.cached = undefined;
      });
    }
    return this.cached.snapshot;
  }

  private async take(): Promise<NodeSnapshot> {
    const s = wire(await this.snapshotter.take());
    if (!Value.Check(NodeSnapshotSchema, s))
      throw new Error('the node reported a snapshot outside its contract');
    return s;
  }

  sandbox(id: string): NodeSandbox | undefined {
    return this.executor.sandbox(id);
  }

  sandboxes(): NodeSandbox[] {
    return this.executor.list();
  }

  endpoint(id: string, port: number): { host: string; port: number } | undefined {
    const host = this.executor.address(id);
    return host ? { host, port } : undefined;
  }

  onSandbox(listener: (sandbox: NodeSandbox) => void): void {
    this.executor.onSandbox(listener);
  }
}
