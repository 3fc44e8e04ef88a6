import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { Cgroup, childCgroups } from '../host/cgroups.js';
import type { HostScope } from '../host/host-scope.js';
import { unmountAll } from '../host/mounts.js';
import type { SandboxNetworking } from '../network/sandbox-networking.js';
import type { DriverName, SandboxRuntime } from '../runtime/types.js';
import type { PauseWithoutMemory } from './pause-without-memory.js';
import { explain, type SandboxCleanup } from './sandbox-cleanup.js';
import type { SandboxRecords } from './sandbox-records.js';
import { allows } from './sandbox-state.js';

export interface RecoveryParts {
  records: SandboxRecords;
  runtimes: Map<DriverName, SandboxRuntime>;
  net: SandboxNetworking;
  cleanup: SandboxCleanup;
  shelf: PauseWithoutMemory;
  scope: HostScope;
  log: Logger;
}

/**
 * What a node does about the sandboxes it finds on start and the ones that die under it:
 * adoption of live sandboxes, the end of dead and half-made ones, the sweep of debris no
 * record owns, and the liveness monitor. Every change goes through the state table
 * (`SandboxRecords.transition`), as an operation's would.
 */
export class SandboxRecovery {
  private monitor: NodeJS.Timeout | undefined;

  constructor(private readonly p: RecoveryParts) {}

  /** On start: adopt live sandboxes, end dead or half-made ones, remove orphans. */
  async recover(): Promise<void> {
    const { records, runtimes, net, cleanup, log } = this.p;
    for (const { id, record: r } of await records.load()) {
      if (!r) {
        log.warn({ dir: records.dirOf(id) }, 'removing a sandbox directory without a record');
        await unmountAll(records.dirOf(id));
        await rm(records.dirOf(id), { recursive: true });
        continue;
      }
      net.claim(r.slot);
      records.add(r);
      const runtime = runtimes.get(r.driver);
      if (r.state === 'suspended') {
        // Saved to disk; the node may have stopped before the process ended. Nothing runs
        // now: the saved VM waits for a resume.
        if (r.runtime) await runtime?.stop(records.ref(r), r.runtime, 0);
        r.runtime = undefined;
        await records.save(r);
        log.info({ sandbox: r.id }, 'adopted a sandbox paused to disk');
        continue;
      }
      if (r.state === 'shelved' && runtime) {
        // Paused without memory: its disk waits for a resume. A shutdown the node's stop
        // cut short is finished (the driver's shutdown is idempotent).
        try {
          await this.p.shelf.shutdown(r, runtime);
          log.info({ sandbox: r.id }, 'adopted a sandbox paused without memory');
          continue;
        } catch (e) {
          log.error({ sandbox: r.id, err: e }, 'a sandbox paused without memory could not be adopted');
        }
      }
      const live =
        allows(r.state, 'measure') && r.runtime && runtime ? await runtime.alive(r.runtime) : false;
      if (live) {
        log.info({ sandbox: r.id, state: r.state }, 'adopted a running sandbox');
        continue;
      }
      // Failed earlier and already freed: kept for inspection, as the monitor leaves it.
      if (r.state === 'error' && !r.runtime && !r.network) continue;
      log.warn({ sandbox: r.id, state: r.state }, 'ending a sandbox that did not survive');
      await cleanup
        .end(r)
        .catch((e: Error) => log.error({ sandbox: r.id, err: e }, 'cleanup after restart failed'));
    }
    await this.removeOrphans();
  }

  /**
   * What no record owns (a node that crashed between two steps, or a data directory
   * that was removed): cgroups, runtime state, network namespaces. One node runs per
   * scope (the node lock is in its state directory), so whatever carries the scope's
   * names and is not ours is debris; other nodes' names are left alone
   * (`HostScope.sweepsCgroup`, `sweepsNetns`).
   */
  private async removeOrphans(): Promise<void> {
    const { scope } = this.p;
    const keep = new Set(this.p.records.ids());
    for (const name of await childCgroups(scope.cgroupParent)) {
      if (keep.has(name) || !scope.sweepsCgroup(name)) continue;
      this.p.log.warn({ cgroup: name }, 'removing an orphaned cgroup');
      await (await Cgroup.at(scope.sandboxCgroup(name))).destroy().catch(() => {});
    }
    for (const runtime of this.p.runtimes.values()) await runtime.sweep(keep);
    // Namespaces, links and firewall entries: SandboxNetworking.start, next.
  }

  /** Looks every `intervalMs` for sandboxes whose process died. */
  watch(intervalMs: number): void {
    this.monitor = setInterval(() => void this.checkAlive(), intervalMs);
    this.monitor.unref();
  }

  unwatch(): void {
    clearInterval(this.monitor);
    this.monitor = undefined;
  }

  /** Marks sandboxes whose process died as failed and frees what they took (their record stays). */
  private async checkAlive(): Promise<void> {
    const { records, runtimes, cleanup, log } = this.p;
    for (const r of records.all()) {
      if (!allows(r.state, 'measure') || !r.runtime) continue;
      const runtime = runtimes.get(r.driver);
      const state = r.runtime;
      if (!runtime || (await runtime.alive(state))) continue;
      await records
        .serialize(r.id, async () => {
          // What ran before it got here may have changed the sandbox: a pause to disk ends
          // the process on purpose, a resume starts another.
          if (r.runtime !== state || !allows(r.state, 'measure')) return;
          const why = await explain(
            new Error(`the ${r.driver} process (pid ${state.pid}) exited`),
            records.ref(r),
          );
          // Free first, so that whoever hears of the failure finds nothing held.
          await cleanup.release(r);
          await records.transition(r, 'fail', why);
        })
        .catch((e: Error) => log.error({ sandbox: r.id, err: e }, 'crash handling failed'));
    }
  }
}
