import type { RuntimeState, SandboxRef, SandboxRuntime } from '../runtime/types.js';

/**
 * The runtime's checkpoint of a sandbox into `work`, taken while it is frozen: a running
 * sandbox is paused for the while and resumed after, whatever happens; a paused one
 * stays as it is.
 */
export async function frozenCheckpoint(
  runtime: SandboxRuntime,
  ref: SandboxRef,
  state: RuntimeState,
  running: boolean,
  work: string,
  signal?: AbortSignal,
): Promise<{ memory: boolean }> {
  if (running) await runtime.pause(ref, state);
  try {
    return await runtime.checkpoint(ref, state, work, signal);
  } finally {
    if (running) await runtime.resume(ref, state);
  }
}
