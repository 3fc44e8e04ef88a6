// Bringing a prepared sandbox up: its process, envd ready, envd's `/init`, the template's
// start command. What a create does after the runtime prepared the sandbox, and what a
// sandbox paused without memory does again when it is resumed (a boot afresh over its disk).
import { randomBytes } from 'node:crypto';
import type { EnvdInit } from '@aiva/protocol';
import { initEnvd, waitForEnvd } from '../envd/envd-http.js';
import { startTemplate } from '../envd/template-start.js';
import type { RuntimeSpec, SandboxRuntime } from '../runtime/types.js';
import {
  DEFAULT_READY_TIMEOUT,
  DEFAULT_START_TIMEOUT_MS,
  type SandboxManagerOptions,
} from './sandbox-options.js';
import type { SandboxRecord } from './sandbox-record.js';
import type { SandboxRecords } from './sandbox-records.js';

/** How long envd may take to answer, and the start command to pass its ready check. */
export type BringUpTimeouts = Pick<SandboxManagerOptions, 'readyTimeoutMs' | 'startTimeoutMs'>;

/** What of a create's envd `/init` a boot afresh sends again (not the token: the record keeps it). */
export function envdInitOf(init: EnvdInit | undefined): SandboxRecord['envdInit'] {
  if (!init) return undefined;
  const { envVars, defaultUser, defaultWorkdir } = init;
  return { envVars, defaultUser, defaultWorkdir };
}

/**
 * Runs a prepared sandbox (`runtime.create` done) and makes it ready: its process,
 * envd's `/init` (token, env vars, clock, entropy), the template's start command
 * unless restored memory runs it already. A create's, and a cold boot's over a kept disk.
 */
export async function bringUp(
  records: SandboxRecords,
  timeouts: BringUpTimeouts,
  r: SandboxRecord,
  runtime: SandboxRuntime,
  spec: RuntimeSpec,
  o: { signal?: AbortSignal; envd?: EnvdInit; restoredToken?: string },
): Promise<void> {
  const template = spec.template;
  r.runtime = await runtime.start(spec, o.signal);
  r.startedAt = new Date().toISOString();
  await records.save(r);
  const state = r.runtime;
  if (!r.network) throw new Error(`sandbox ${r.id} has no network`);
  const address = r.network.address;
  r.envdVersion = await waitForEnvd(address, {
    timeoutMs: timeouts.readyTimeoutMs?.[r.driver] ?? DEFAULT_READY_TIMEOUT[r.driver],
    signal: o.signal,
    stillAlive: () => runtime.alive(state),
  });
  // A restored envd still holds the token of the sandbox it was saved from. A VM
  // restored from saved memory also holds its random state: the host reseeds it.
  await initEnvd(
    address,
    {
      timestamp: new Date().toISOString(),
      entropy: runtime.capabilities.entropyReseed ? randomBytes(64).toString('hex') : undefined,
      defaultUser: template.defaults.user,
      defaultWorkdir: template.defaults.workdir,
      ...o.envd,
      envVars: { ...template.env, ...o.envd?.envVars },
      accessToken: r.accessToken,
    },
    o.restoredToken,
  );
  // Restored memory (a checkpoint's, or a VM snapshot made after the start command
  // was ready) has the start command running already; anything else starts it.
  if (!o.restoredToken && !r.runtime.startCommandRunning)
    await startTemplate(address, r.accessToken, template, {
      timeoutMs: timeouts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      signal: o.signal,
    });
}
