/**
 * The life of a sandbox (seed 001): Creating → Running ⇄ Paused → Stopping → Stopped |
 * Error. A paused sandbox whose driver can save it is then Suspended: saved to disk, its
 * process ended, holding no memory; a resume restores it. A sandbox paused without its
 * memory (E2B's `pause({ keepMemory: false })`) is Shelved: its processes ended, its disk
 * kept; a resume boots it again over that disk.
 */
export const SANDBOX_STATES = [
  'creating',
  'running',
  'paused',
  'suspended',
  'shelved',
  'stopping',
  'stopped',
  'error',
] as const;
export type SandboxState = (typeof SANDBOX_STATES)[number];

const LIVE = ['creating', 'running', 'paused', 'suspended', 'shelved'] as const;

/**
 * Every operation on a sandbox and the states it may start from; those that move the
 * sandbox say where to (`to`). This table is the one place that decides: the manager,
 * recovery and the liveness monitor all go through it.
 */
const OPERATIONS = {
  // Transitions.
  ready: { from: ['creating'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  /** A paused sandbox saved to disk, its process ended (drivers with `pauseToDisk`). */
  suspend: { from: ['paused'], to: 'suspended' },
  /**
   * Its processes ended, its disk kept (drivers with `coldResume`). From `paused`: a
   * resume that drops the memory (E2B's `memory: false`) shelves a paused sandbox first.
   */
  shelve: { from: ['running', 'paused'], to: 'shelved' },
  resume: { from: ['paused', 'suspended', 'shelved'], to: 'running' },
  /** From `stopping` too: an end that was interrupted (a node crash) is taken up again. */
  stop: { from: [...LIVE, 'stopping', 'error'], to: 'stopping' },
  stopped: { from: ['stopping'], to: 'stopped' },
  fail: { from: [...LIVE, 'stopping'], to: 'error' },
  // Operations that leave the state as it is.
  checkpoint: { from: ['running', 'paused', 'suspended'] },
  'change the network policy of': { from: ['running', 'paused', 'suspended', 'shelved'] },
  're-initialise': { from: ['running'] },
  /** Its process: resource use, liveness (a suspended sandbox has none; a creating one is watched by its create). */
  measure: { from: ['running', 'paused'] },
  /** Its ports and envd, through its network. */
  reach: { from: ['running', 'paused', 'suspended', 'shelved'] },
} satisfies Record<string, { from: readonly SandboxState[]; to?: SandboxState }>;

export type SandboxOperation = keyof typeof OPERATIONS;
export type SandboxTransition = {
  [K in SandboxOperation]: (typeof OPERATIONS)[K] extends { to: SandboxState } ? K : never;
}[SandboxOperation];

/** An operation that the sandbox's current state does not allow (pause of a paused sandbox …). */
export class SandboxStateError extends Error {
  override name = 'SandboxStateError';
  constructor(
    readonly id: string,
    readonly state: SandboxState,
    readonly operation: string,
  ) {
    super(`sandbox ${id} is ${state}: cannot ${operation} it`);
  }
}

/** Whether `state` allows `op`. */
export function allows(state: SandboxState, op: SandboxOperation): boolean {
  return (OPERATIONS[op].from as readonly SandboxState[]).includes(state);
}

/** Throws a SandboxStateError unless `state` allows `op`. */
export function mustAllow(id: string, state: SandboxState, op: SandboxOperation): void {
  if (!allows(state, op)) throw new SandboxStateError(id, state, op);
}

/** The state after `op`, or a SandboxStateError. */
export function nextState(id: string, state: SandboxState, op: SandboxTransition): SandboxState {
  mustAllow(id, state, op);
  return OPERATIONS[op].to;
}

/** Whether the sandbox still holds resources (it has not ended or failed). */
export function isLive(state: SandboxState): boolean {
  return (LIVE as readonly SandboxState[]).includes(state);
}
