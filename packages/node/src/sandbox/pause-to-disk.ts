import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { initEnvd } from '../envd/envd-http.js';
import type { RuntimeSpec, RuntimeState, SandboxRuntime } from '../runtime/types.js';
import type { SandboxRecord } from './sandbox-record.js';
import type { SandboxRecords } from './sandbox-records.js';

/**
 * Suspension, for drivers that can (`pauseToDisk`: microVMs): a paused sandbox is saved
 * into `suspended/` in its directory (the driver's checkpoint) and its process ends, so
 * that it holds no memory; a resume restores it in the same sandbox.
 */
export class PauseToDisk {
  constructor(
    private readonly records: SandboxRecords,
    private readonly log: Logger,
  ) {}

  dirOf(r: SandboxRecord): string {
    return join(this.records.dirOf(r.id), 'suspended');
  }

  /** Saves a paused sandbox and ends its process (→ suspended). If the save fails it stays paused in memory. */
  async suspend(r: SandboxRecord, runtime: SandboxRuntime, state: RuntimeState): Promise<void> {
    const dir = this.dirOf(r);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    try {
      await runtime.checkpoint(this.records.ref(r), state, dir);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      this.log.warn(
        { sandbox: r.id, err: e },
        'saving the paused VM to disk failed: it stays paused in memory',
      );
      return;
    }
    // Recorded before the process goes: a crash from here on finds the saved VM on restart.
    await this.records.transition(r, 'suspend');
    // Its state is saved: no need to let the guest wind down.
    await runtime.stop(this.records.ref(r), state, 1000);
    r.runtime = undefined;
    await this.records.save(r);
    this.log.info({ sandbox: r.id }, 'paused VM saved to disk; its process ended');
  }

  /**
   * Restores a suspended sandbox in place: same id, network, token. The caller then
   * records the resume.
   */
  async wake(r: SandboxRecord, runtime: SandboxRuntime, spec: RuntimeSpec): Promise<void> {
    r.runtime = await runtime.start({ ...spec, restoreFrom: this.dirOf(r) });
    await this.records.save(r);
    await rm(this.dirOf(r), { recursive: true, force: true });
    // The clock stood still while it was saved, and its random state is an old one. The VM
    // runs either way: a failure here is logged, not a failed resume.
    await initEnvd(
      r.network?.address ?? '',
      {
        timestamp: new Date().toISOString(),
        entropy: runtime.capabilities.entropyReseed ? randomBytes(64).toString('hex') : undefined,
      },
      r.accessToken,
    ).catch((e: Error) =>
      this.log.warn({ sandbox: r.id, err: e }, 'resumed VM did not take the clock and entropy'),
    );
  }
}
