/** The life of a sandbox (seed 001): Creating → Running ⇄ Paused → Stopping → Stopped | Error. */
export type SandboxState = 'creating' | 'running' | 'paused' | 'stopping' | 'stopped' | 'error';

/** The operations that move a sandbox between states, and where each may start from. */
const TRANSITIONS = {
  ready: { from: ['creating'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  stop: { from: ['creating', 'running', 'paused', 'error'], to: 'stopping' },
  stopped: { from: ['stopping'], to: 'stopped' },
  fail: { from: ['creating', 'running', 'paused', 'stopping'], to: 'error' },
} satisfies Record<string, { from: SandboxState[]; to: SandboxState }>;

export type SandboxTransition = keyof typeof TRANSITIONS;

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

/** The state after `op`, or a SandboxStateError. */
export function nextState(id: string, state: SandboxState, op: SandboxTransition): SandboxState {
  const t: { from: SandboxState[]; to: SandboxState } = TRANSITIONS[op];
  if (!t.from.includes(state)) throw new SandboxStateError(id, state, op);
  return t.to;
}
