import { type Static, Type } from 'typebox';
import { NodeCheckpointSchema, NodeSandboxSchema, SandboxUsageSchema } from './sandbox-types.js';

// What a node reports of itself, whole, every few seconds and after each change of a
// sandbox's state (seed 002: a node that reconnects pushes all its state). Raw facts
// only, cheap to gather; the server places sandboxes from them.

const MiB = Type.Integer({ minimum: 0 });

export const NodeSnapshotSchema = Type.Object({
  /** The contract version the node speaks (`1.0`). */
  protocol: Type.String(),
  nodeId: Type.String(),
  /** Changes when the node agent restarts: a snapshot from a new boot replaces what the server knew. */
  bootId: Type.String(),
  /** Increases with each snapshot of a boot; an older one than the last seen is ignored. */
  seq: Type.Integer({ minimum: 0 }),
  sentAt: Type.String(),
  versions: Type.Object({ aiva: Type.String(), guestLayer: Type.Optional(Type.String()) }),
  /** The drivers that run here (`microvm`, `container`) and the one creates use by default. */
  drivers: Type.Array(Type.String()),
  defaultDriver: Type.Optional(Type.String()),
  capacity: Type.Object({
    cores: Type.Integer({ minimum: 1 }),
    memoryMiB: MiB,
    /** The memory sandboxes may be given in all (the node's budget). */
    memoryBudgetMiB: MiB,
    diskMiB: MiB,
    maxSandboxes: Type.Optional(Type.Integer({ minimum: 0 })),
  }),
  free: Type.Object({ memAvailableMiB: MiB, diskFreeMiB: MiB, load1: Type.Number() }),
  artefacts: Type.Object({
    /** Recipe templates the node can build and run (`base`, `code-interpreter-v1`). */
    recipes: Type.Array(Type.String()),
    /** Template images in the node's store, by hash. */
    images: Type.Array(Type.String()),
    /** Complete layers in the node's store, by hash (since 1.1): what it can send to others. */
    layers: Type.Optional(Type.Array(Type.String())),
  }),
  checkpoints: Type.Array(NodeCheckpointSchema),
  /**
   * The node's direct listener (`aiva node join --direct-address`): where the server may
   * dial it, and the SHA-256 fingerprint of its self-signed certificate (lower-case hex),
   * which the server pins instead of trusting a CA.
   */
  direct: Type.Optional(
    Type.Object({ address: Type.String(), fingerprint: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
  ),
  /**
   * Sandboxes the node ended by itself lately (a deadline of `sandbox.set-deadline`), with
   * why: the server ends their rows with that reason rather than as failed.
   */
  ended: Type.Optional(
    Type.Array(Type.Object({ id: Type.String(), reason: Type.Enum(['timeout']), at: Type.String() })),
  ),
  sandboxes: Type.Array(
    Type.Object({ ...NodeSandboxSchema.properties, usage: Type.Optional(SandboxUsageSchema) }),
  ),
});
export type NodeSnapshot = Static<typeof NodeSnapshotSchema>;
