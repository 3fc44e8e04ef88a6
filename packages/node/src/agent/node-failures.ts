import { NodeCommandError, type NodeFailure } from '@aiva/protocol/node';
import { BuildStepError } from '../build/build-types.js';
import { MissingArtefactError } from '../image/image-store.js';
import { OciImageError } from '../image/oci-errors.js';
import { SandboxSpecError } from '../runtime/types.js';
import { SandboxNotFoundError } from '../sandbox/sandbox-records.js';
import { SandboxStateError } from '../sandbox/sandbox-state.js';
import { VolumeBusyError } from '../sandbox/sandbox-volumes.js';

// The node's errors as the contract's codes: the one place where a node's own error
// classes become what crosses to the server.

/** What `e`, thrown while a command ran, tells the server. */
export function failureOf(e: unknown): NodeFailure {
  if (e instanceof NodeCommandError) return e.toFailure();
  const message = e instanceof Error ? e.message : String(e);
  if (e instanceof VolumeBusyError)
    return { code: 'RESOURCE_BUSY', message, details: { volume: e.volumeId, holders: e.holders } };
  if (e instanceof SandboxSpecError) return { code: 'INVALID_SPEC', message };
  if (e instanceof SandboxNotFoundError) return { code: 'SANDBOX_NOT_FOUND', message };
  if (e instanceof SandboxStateError)
    return { code: 'INVALID_STATE', message, details: { state: e.state, operation: e.operation } };
  if (e instanceof MissingArtefactError)
    return {
      code: 'MISSING_ARTEFACT',
      message,
      retryable: true,
      details: {
        layers: e.layers,
        ...(e.buildable ? { buildable: true } : {}),
        ...(e.checkpoints.length > 0 ? { checkpoints: e.checkpoints } : {}),
      },
    };
  if (e instanceof BuildStepError)
    return { code: 'BUILD_STEP_FAILED', message, details: { step: e.step, layers: e.layers } };
  // A registry image that cannot be had is the build's base step failing.
  if (e instanceof OciImageError)
    return { code: 'BUILD_STEP_FAILED', message, details: { step: 'base', layers: [], reason: e.reason } };
  if (e instanceof Error && e.name === 'AbortError') return { code: 'ABORTED', message };
  return { code: 'INTERNAL', message };
}
