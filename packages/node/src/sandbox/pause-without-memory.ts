import type { Logger } from 'pino';
import { execInSandbox } from '../envd/envd-client.js';
import { type RuntimeSpec, type SandboxRuntime, SandboxSpecError } from '../runtime/types.js';
import { type BringUpTimeouts, bringUp } from './sandbox-bring-up.js';
import { explain } from './sandbox-cleanup.js';
import type { SandboxRecord } from './sandbox-record.js';
import type { SandboxRecords } from './sandbox-records.js';
import { mustAllow } from './sandbox-state.js';

/** How long the guest's `sync` may take before the shutdown goes ahead without it. */
const SYNC_TIMEOUT_MS = 30_000;

/**
 * A pause without memory (E2B's `pause({ keepMemory: false })`, drivers with
 * `coldResume`): the sandbox's processes end and the host holds nothing of it but its
 * disk (a container's disk image with its upper layer, a microVM's qcow2 layer), its
 * network and its record → `shelved`. `wake` boots it afresh over that disk, as a
 * create would.
 */
export class PauseWithoutMemory {
  constructor(
    private readonly records: SandboxRecords,
    private readonly log: Logger,
  ) {}

  /** Whether the driver can; a SandboxSpecError (the request's 400) otherwise. */
  static check(
    r: SandboxRecord,
    runtime: SandboxRuntime,
  ): asserts runtime is SandboxRuntime & {
    shutdown: NonNullable<SandboxRuntime['shutdown']>;
  } {
    if (!runtime.capabilities.coldResume || !runtime.shutdown)
      throw new SandboxSpecError(`the ${r.driver} runtime cannot pause a sandbox without its memory`);
  }

  /** Ends a running or paused sandbox's processes and keeps its disk (→ shelved). */
  async shelve(r: SandboxRecord, runtime: SandboxRuntime): Promise<void> {
    mustAllow(r.id, r.state, 'shelve');
    PauseWithoutMemory.check(r, runtime);
    // A guest kernel keeps written files in its own page cache until it syncs; a paused
    // guest cannot, and its disk then has crash-recovery semantics (as E2B says).
    if (r.state === 'running' && r.network)
      await execInSandbox(r.network.address, 'sync', {
        accessToken: r.accessToken,
        user: 'root',
        timeoutMs: SYNC_TIMEOUT_MS,
      }).catch((e: Error) => this.log.warn({ sandbox: r.id, err: e }, 'the guest did not sync its files'));
    // Recorded before the processes go: a node that stops from here on finishes the
    // shutdown when it adopts the sandbox.
    await this.records.transition(r, 'shelve');
    await this.shutdown(r, runtime);
    this.log.info({ sandbox: r.id }, 'sandbox paused without memory: its processes ended, its disk kept');
  }

  /** Frees what runs of a shelved sandbox (idempotent): after `shelve`, a failed cold boot, on adoption. */
  async shutdown(r: SandboxRecord, runtime: SandboxRuntime): Promise<void> {
    PauseWithoutMemory.check(r, runtime);
    await runtime.shutdown(this.records.ref(r), r.runtime);
    r.runtime = undefined;
    await this.records.save(r);
  }

  /**
   * Boots a shelved sandbox afresh over its kept disk: same id, network, token and env
   * vars; its processes are new. If it fails the sandbox stays shelved, its disk as it was.
   */
  async wake(
    r: SandboxRecord,
    runtime: SandboxRuntime,
    saved: RuntimeSpec,
    timeouts: BringUpTimeouts,
  ): Promise<void> {
    // What a shutdown that a node stop cut short left running.
    if (r.runtime) await this.shutdown(r, runtime);
    const spec = { ...saved, keptDisk: true };
    try {
      await runtime.create(spec);
      await bringUp(this.records, timeouts, r, runtime, spec, { envd: r.envdInit });
    } catch (e) {
      const why = await explain(e as Error, this.records.ref(r));
      await this.shutdown(r, runtime).catch((se: Error) =>
        this.log.error({ sandbox: r.id, err: se }, 'freeing a failed boot failed'),
      );
      throw new Error(`sandbox ${r.id} could not boot again from its disk: ${why}`, { cause: e });
    }
    this.log.info({ sandbox: r.id }, 'sandbox paused without memory booted again from its disk');
  }
}
