import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { mountedUnder } from '../host/mounts.js';
import type { SandboxNetworking } from '../network/sandbox-networking.js';
import { type DriverName, type SandboxRef, type SandboxRuntime, SandboxSpecError } from '../runtime/types.js';
import type { SandboxRecord } from './sandbox-record.js';
import type { SandboxRecords } from './sandbox-records.js';
import type { VolumeDisks } from './volume-disks.js';

/**
 * Freeing what a sandbox took, shared by the lifecycle (kill, failed creates), the
 * liveness monitor and recovery, so that a sandbox ends the same way whoever ends it.
 */
export class SandboxCleanup {
  constructor(
    private readonly records: SandboxRecords,
    private readonly runtimes: Map<DriverName, SandboxRuntime>,
    private readonly net: SandboxNetworking,
    private readonly volumes: Pick<VolumeDisks, 'letGo'>,
  ) {}

  /** Frees everything the sandbox took: runtime, volumes it held, network, address, directory. */
  async teardown(r: SandboxRecord): Promise<void> {
    const dir = this.records.dirOf(r.id);
    await this.runtimes.get(r.driver)?.destroy(this.records.ref(r), r.runtime);
    await this.giveBackVolumes(r);
    await this.net.detach({ id: r.id, slot: r.slot, network: r.network });
    const mounts = await mountedUnder(dir);
    if (mounts.length > 0) throw new Error(`not removing ${dir}: still mounted: ${mounts.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  }

  /** Frees a failed sandbox's runtime and network but keeps its record and logs for inspection. */
  async release(r: SandboxRecord): Promise<void> {
    await this.runtimes.get(r.driver)?.destroy(this.records.ref(r), r.runtime);
    await this.giveBackVolumes(r);
    await this.net.detach({ id: r.id, slot: r.slot, network: r.network });
    r.runtime = undefined;
    r.network = undefined;
  }

  /** The volumes a microVM held, mounted on the host again once its VM is gone (`VolumeDisks.letGo`). */
  private async giveBackVolumes(r: SandboxRecord): Promise<void> {
    for (const v of r.volumes ?? []) await this.volumes.letGo(v.volumeId, r.id);
  }

  /**
   * Ends a sandbox: stopping → (everything freed) → stopped, and its record goes. If
   * freeing fails the sandbox is left in `error`, saying why, and the error is thrown.
   */
  async end(r: SandboxRecord): Promise<void> {
    await this.records.transition(r, 'stop');
    try {
      await this.teardown(r);
    } catch (e) {
      await this.records.transition(r, 'fail', `cleanup failed: ${(e as Error).message}`);
      throw e;
    }
    await this.records.transition(r, 'stopped');
    this.records.delete(r.id);
  }
}

/** The error message, with the end of the sandbox's console log when it tells more. */
export async function explain(e: Error, sandbox: SandboxRef | undefined): Promise<string> {
  if (!sandbox || e instanceof SandboxSpecError) return e.message;
  const console = await readFile(join(sandbox.dir, 'console.log'), 'utf8').catch(() => '');
  const tail = console.trim().split('\n').slice(-10).join('\n');
  return tail ? `${e.message}\nconsole:\n${tail}` : e.message;
}
