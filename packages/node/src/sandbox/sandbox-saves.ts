import { mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { runCommand } from '../host/command.js';
import {
  type DriverName,
  type RuntimeState,
  type SandboxRuntime,
  SandboxSpecError,
} from '../runtime/types.js';
import { CheckpointStore } from './checkpoint-store.js';
import { frozenCheckpoint } from './frozen-checkpoint.js';
import type { CheckpointRecord, SandboxRecord } from './sandbox-record.js';
import type { SandboxRecords } from './sandbox-records.js';
import { mustAllow } from './sandbox-state.js';
import { VolumeBusyError } from './sandbox-volumes.js';

/** What saving a sandbox needs of its manager. */
export interface SandboxSavesDeps {
  records: SandboxRecords;
  checkpoints: CheckpointStore;
  runtime(driver: DriverName): SandboxRuntime;
  /** Where a suspended sandbox's saved state is (PauseToDisk's directory for it). */
  suspendedDir(r: SandboxRecord): string;
  log: Logger;
}

const mustRun = (r: SandboxRecord): RuntimeState => {
  if (!r.runtime) throw new Error(`sandbox ${r.id} has no running process`);
  return r.runtime;
};

/**
 * A microVM's volumes are its own disks, which its copies would write too: one that holds
 * any is not checkpointed (a 409 through the contract).
 */
function refuseHeldVolumes(r: SandboxRecord, runtime: SandboxRuntime): void {
  const held = runtime.capabilities.volumes === 'exclusive' ? (r.volumes ?? []) : [];
  if (held[0])
    throw new VolumeBusyError(
      `sandbox ${r.id} holds volume ${held.map((v) => v.volumeId).join(', ')} as its disk: a microVM with volumes cannot be snapshotted or forked (its copies would write the same volume)`,
      held[0].volumeId,
      [r.id],
    );
}

/**
 * Saving a sandbox without changing its state: a checkpoint that creates copy, or the
 * changes of its files as an overlay layer (a template build step's result). A running
 * sandbox is frozen for the while (`frozenCheckpoint`) and thawed after.
 */
export class SandboxSaves {
  constructor(private readonly deps: SandboxSavesDeps) {}

  /**
   * Saves the sandbox under `name` such that creates from it (`fromCheckpoint`) make
   * independent copies: its memory and processes where the driver can (microVMs), its
   * files always. Nothing is left of a checkpoint that failed.
   */
  async checkpoint(id: string, name: string, signal?: AbortSignal): Promise<CheckpointRecord> {
    CheckpointStore.checkName(name);
    const { records, checkpoints, log } = this.deps;
    return records.serialize(id, async () => {
      const r = records.mustGet(id);
      mustAllow(id, r.state, 'checkpoint');
      const runtime = this.deps.runtime(r.driver);
      refuseHeldVolumes(r, runtime);
      const record = await checkpoints.write(name, async (work) => {
        let memory: boolean;
        if (r.state === 'suspended') {
          // Saved to disk already: what a checkpoint would hold is there.
          await runCommand('cp', ['-a', '--sparse=always', `${this.deps.suspendedDir(r)}/.`, work]);
          memory = true;
        } else {
          const running = r.state === 'running';
          ({ memory } = await frozenCheckpoint(runtime, records.ref(r), mustRun(r), running, work, signal));
        }
        return {
          source: id,
          driver: r.driver,
          template: r.template,
          kernel: r.kernel,
          resources: r.resources,
          networkPolicy: r.networkPolicy,
          memory,
          accessToken: memory ? r.accessToken : undefined,
        };
      });
      log.info({ sandbox: id, checkpoint: name, bytes: record.bytes }, 'checkpoint saved');
      return record;
    });
  }

  /**
   * Saves what the sandbox changed in its files over its template as an overlay layer
   * directory `dest` (which must not exist). Only drivers whose checkpoint is such a layer
   * (`changesAsLayer`: containers) can.
   */
  async saveChanges(id: string, dest: string, signal?: AbortSignal): Promise<void> {
    const { records } = this.deps;
    await records.serialize(id, async () => {
      const r = records.mustGet(id);
      mustAllow(id, r.state, 'checkpoint');
      const runtime = this.deps.runtime(r.driver);
      if (!runtime.capabilities.changesAsLayer)
        throw new SandboxSpecError(`the ${r.driver} runtime cannot save a sandbox's changes as a layer`);
      const state = mustRun(r);
      const work = `${dest}.saving`;
      await mkdir(work, { recursive: true });
      try {
        await frozenCheckpoint(runtime, records.ref(r), state, r.state === 'running', work, signal);
        await rename(join(work, 'upper'), dest);
      } finally {
        await rm(work, { recursive: true, force: true });
      }
    });
  }
}
