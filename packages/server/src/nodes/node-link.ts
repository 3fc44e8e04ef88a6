import type {
  BuildLogLine,
  NodeCommand,
  NodeCommandOutcome,
  NodeSandbox,
  NodeSnapshot,
} from '@aiva/protocol/node';

/**
 * How the control plane reaches one node (seed 003): it sends the node commands of the
 * server ↔ node contract (`@aiva/protocol/node`) and sees what the node reports. The
 * node in this process (`aiva up`) and a node agent on another host are both links.
 */
export interface NodeLink {
  readonly id: string;
  /** Sends a command and waits for its outcome; `progress` hears a build's log as it runs. */
  send(command: NodeCommand, progress?: (line: BuildLogLine) => void): Promise<NodeCommandOutcome>;
  /** What the node last reported of itself. */
  snapshot(): Promise<NodeSnapshot>;
  /** The node's sandbox, as last reported, if it has it. */
  sandbox(id: string): NodeSandbox | undefined;
  sandboxes(): NodeSandbox[];
  /** The host and port at which this process reaches a port of a running sandbox. */
  endpoint(id: string, port: number): { host: string; port: number } | undefined;
  /** Hears each change of a sandbox's state. */
  onSandbox(listener: (sandbox: NodeSandbox) => void): void;
}
