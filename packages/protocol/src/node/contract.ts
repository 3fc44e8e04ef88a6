import { type Static, Type } from 'typebox';

// The versions and the error codes of the server ↔ node contract (seed 003): what both
// the node in the server's process (`aiva up`) and a node agent on another host
// (`aiva node join`) speak.

/**
 * The contract's version. Majors must be equal; within a major, fields are only added
 * and each side ignores fields it does not know.
 */
export const NODE_PROTOCOL = { major: 1, minor: 4 } as const;
// 1.1: `artefact.push` and `artefact.fetch` (layers between nodes); `sandbox.set-deadline`;
// a snapshot's layers, `direct` listener and `ended` sandboxes.
// 1.2: checkpoints between nodes (`artefact.push`/`fetch` `checkpoints`; MISSING_ARTEFACT
// `details.checkpoints`).
// 1.3: `sandbox.usage`'s `egressBytes` (the node's egress counter of the sandbox), and
//      `sandbox.create`'s `volumes` (volumes of the node bound into the sandbox).
// 1.4: RESOURCE_BUSY (a volume a microVM holds alone); `template.build`'s `requireCommand`
//      and a build context's `command` (the image's ENTRYPOINT and CMD).
export type NodeProtocolVersion = { major: number; minor: number };

/** The header every node request carries its protocol version in (`1.0`). */
export const NODE_PROTOCOL_HEADER = 'aiva-node-protocol';

export function formatProtocol(v: NodeProtocolVersion): string {
  return `${v.major}.${v.minor}`;
}

/** `1.3` → {major: 1, minor: 3}; undefined for anything else. */
export function parseProtocol(text: string | undefined): NodeProtocolVersion | undefined {
  const m = /^(\d{1,4})\.(\d{1,4})$/.exec(text ?? '');
  return m ? { major: Number(m[1]), minor: Number(m[2]) } : undefined;
}

export function protocolCompatible(a: NodeProtocolVersion, b: NodeProtocolVersion): boolean {
  return a.major === b.major;
}

/**
 * Why a command failed, as a code both sides know (a node's errors are its own classes;
 * they cross the contract as these).
 */
export const NODE_ERROR_CODES = [
  /** The request is wrong: a template that does not exist, resources out of range, a policy the node refuses. */
  'INVALID_SPEC',
  'SANDBOX_NOT_FOUND',
  /** The sandbox's state does not allow the operation (`details.state`, `details.operation`). */
  'INVALID_STATE',
  'CHECKPOINT_NOT_FOUND',
  /**
   * The node lacks a layer the template needs (`details.layers`; `details.buildable` when it
   * could build them itself, a recipe's): fetch them, then retry.
   */
  'MISSING_ARTEFACT',
  /**
   * What the command needs is another sandbox's: a volume a microVM holds alone, or one a
   * microVM cannot take while others mount it (`details.volume`, `details.holders`).
   */
  'RESOURCE_BUSY',
  /** The node has no room (memory, addresses, slots): place it elsewhere. */
  'NO_CAPACITY',
  /** A template build failed at `details.step`; `details.layers` are what its earlier steps made. */
  'BUILD_STEP_FAILED',
  /** The node restarted while the command ran; what it had made was undone. */
  'INTERRUPTED',
  'UNSUPPORTED_COMMAND',
  'DEADLINE_EXCEEDED',
  'ABORTED',
  'INTERNAL',
] as const;
export type NodeErrorCode = (typeof NODE_ERROR_CODES)[number];

export const NodeFailureSchema = Type.Object({
  code: Type.Enum(NODE_ERROR_CODES),
  message: Type.String(),
  /** Worth trying again (here or on another node). */
  retryable: Type.Optional(Type.Boolean()),
  details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
});
export type NodeFailure = Static<typeof NodeFailureSchema>;

/** A command that failed on a node, on either side of the contract. */
export class NodeCommandError extends Error {
  override name = 'NodeCommandError';
  readonly code: NodeErrorCode;
  readonly retryable: boolean;
  readonly details: Record<string, unknown>;

  constructor(failure: NodeFailure, options?: { cause?: unknown }) {
    super(failure.message, options);
    this.code = failure.code;
    this.retryable = failure.retryable ?? false;
    this.details = failure.details ?? {};
  }

  toFailure(): NodeFailure {
    return {
      code: this.code,
      message: this.message,
      ...(this.retryable ? { retryable: true } : {}),
      ...(Object.keys(this.details).length > 0 ? { details: this.details } : {}),
    };
  }
}
