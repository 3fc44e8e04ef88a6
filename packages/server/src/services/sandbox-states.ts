import type { SandboxState } from '../db/schema.js';
import { InvalidStateError } from './errors.js';

/**
 * A sandbox's life as the control plane keeps it, in its row and (while it lives) in the
 * live index: creating → running ⇄ paused, and from any of these to an end, `killed`
 * (asked for, timed out, shut down, lost) or `error` (failed on its node).
 */
export type { SandboxState };

/** The states of a sandbox that has not ended (the live index holds these). */
export type LiveState = 'creating' | 'running' | 'paused';
export const LIVE_STATES: readonly LiveState[] = ['creating', 'running', 'paused'];

/** The states a sandbox ends in. */
export type EndedState = Exclude<SandboxState, LiveState>;

/** Where each state may go: the one table of the control plane's transitions. */
const TRANSITIONS: { readonly [S in SandboxState]: readonly SandboxState[] } = {
  creating: ['running', 'killed', 'error'],
  running: ['paused', 'killed', 'error'],
  paused: ['running', 'killed', 'error'],
  killed: [],
  error: [],
};

/** `to`, if a sandbox in `from` may go there; an InvalidStateError (409) otherwise. */
export function transition<S extends SandboxState>(id: string, from: SandboxState, to: S): S {
  if (TRANSITIONS[from].includes(to)) return to;
  throw new InvalidStateError(
    from === to ? `sandbox ${id} is already ${to}` : `sandbox ${id} is ${from}: it cannot become ${to}`,
  );
}

/** Why a sandbox ended. */
export type EndReason = 'killed' | 'timeout' | 'shutdown' | 'failed' | 'lost' | 'node-lost';

const ENDINGS: { readonly [R in EndReason]: { state: EndedState; error: string | null } } = {
  /** Killed on request: not an error. */
  killed: { state: 'killed', error: null },
  timeout: { state: 'killed', error: 'timeout' },
  shutdown: { state: 'killed', error: 'server shut down' },
  /** Not running on the node any more when the server restarted. */
  lost: { state: 'killed', error: 'lost when the server restarted' },
  /** Its node was unreachable longer than the grace period (`aiva server --lost-after`). */
  'node-lost': { state: 'killed', error: 'its node was unreachable for too long' },
  /** Its process died (the node says why). */
  failed: { state: 'error', error: 'the sandbox failed' },
};

/** The state and error text an ended sandbox's row keeps; `detail` (the node's own words) replaces the text. */
export function ending(reason: EndReason, detail?: string): { state: EndedState; error: string | null } {
  const { state, error } = ENDINGS[reason];
  return { state, error: detail ?? error };
}

/** The states E2B's API shows and lists filter on: a creating sandbox is not shown yet, an ended one no more. */
export type ApiState = 'running' | 'paused';

export function isApiState(state: string): state is ApiState {
  return state === 'running' || state === 'paused';
}

/** A live sandbox's state as E2B's API shows it. */
export function apiState(state: SandboxState): ApiState {
  return state === 'paused' ? 'paused' : 'running';
}
