import type { Agent } from 'node:http';
import type {
  BuildLogLine,
  NodeCommand,
  NodeCommandOutcome,
  NodeSandbox,
  NodeSnapshot,
} from '@aiva/protocol/node';

/** HTTP agents that open connections to a sandbox's port (`host` is the sandbox id): a remote node's tunnel. */
export interface ProxyVia {
  plain: Agent;
  /** TLS inside the connection, for the sandbox's `httpsPorts`. */
  https: Agent;
}

/** A sandbox's port: an address this process dials, or a host and port that `via`'s agents dial. */
export interface NodeEndpoint {
  host: string;
  port: number;
  via?: ProxyVia;
}

/**
 * How the control plane reaches one node (seed 003): it sends the node commands of the
 * server ↔ node contract (`@aiva/protocol/node`) and sees what the node reports. The
 * node in this process (`aiva up`) and a node agent on another host are both links.
 */
export interface NodeLink {
  readonly id: string;
  /**
   * Whether what it reports is current: a remote node's is not until it reports to this
   * server process (after a restart, its stored snapshot may be behind).
   */
  readonly fresh: boolean;
  /** Sends a command and waits for its outcome; `progress` hears a build's log as it runs. */
  send(command: NodeCommand, progress?: (line: BuildLogLine) => void): Promise<NodeCommandOutcome>;
  /** What the node last reported of itself. */
  snapshot(): Promise<NodeSnapshot>;
  /** The node's sandbox, as last reported, if it has it. */
  sandbox(id: string): NodeSandbox | undefined;
  sandboxes(): NodeSandbox[];
  /** How this process reaches a port of a running sandbox. */
  endpoint(id: string, port: number): NodeEndpoint | undefined;
  /** Hears each change of a sandbox's state. */
  onSandbox(listener: (sandbox: NodeSandbox) => void): void;
}
