import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type Logger, pino } from 'pino';
import { initEnvd } from '../envd/envd-http.js';
import { removeEmptyCgroup } from '../host/cgroups.js';
import { type FileLock, LockBusyError, lockFile } from '../host/file-lock.js';
import { DEFAULT_CGROUP_PARENT, DEFAULT_HOST_SCOPE } from '../host/host-scope.js';
import { letOtherIdsSearch } from '../host/search-permission.js';
import { type NetworkPolicy, validateNetworkPolicy } from '../network/network-policy.js';
import { SandboxNetworking } from '../network/sandbox-networking.js';
import {
  type DriverName,
  type RuntimeSpec,
  type RuntimeState,
  type RuntimeStats,
  type SandboxRuntime,
  SandboxSpecError,
} from '../runtime/types.js';
import { CheckpointStore } from './checkpoint-store.js';
import { PauseToDisk } from './pause-to-disk.js';
import { PauseWithoutMemory } from './pause-without-memory.js';
import { bringUp, envdInitOf } from './sandbox-bring-up.js';
import { explain, SandboxCleanup } from './sandbox-cleanup.js';
import {
  type CreateSandboxOptions,
  NODE_LOCK_DIR,
  NodeBusyError,
  newSandboxId,
  SANDBOX_ID_PATTERN,
  type SandboxManagerOptions,
} from './sandbox-options.js';
import { type CheckpointRecord, SANDBOX_RECORD_VERSION, type SandboxRecord } from './sandbox-record.js';
import {
  imagesOfRecords,
  type SandboxInfo,
  SandboxNotFoundError,
  SandboxRecords,
} from './sandbox-records.js';
import { SandboxRecovery } from './sandbox-recovery.js';
import { SandboxSaves } from './sandbox-saves.js';
import { resolveSource } from './sandbox-source.js';
import { mustAllow } from './sandbox-state.js';
import { adoptVolumes, checkVolumeHolders, checkVolumes, volumeSpecs } from './sandbox-volumes.js';
import { VolumeDisks } from './volume-disks.js';

const usesUserNamespaces = (o: SandboxManagerOptions) =>
  [...o.runtimes.values()].some((r) => r.capabilities.userNamespace);

/**
 * Owns every sandbox of this host: creates them (image, network, runtime, envd) and moves
 * them through their states. Its parts: the records (`SandboxRecords`: persisted, the
 * state table, events), the checkpoint store, recovery (adoption on open, orphans, the
 * liveness monitor) and cleanup. What differs between drivers is asked of the driver's
 * declared capabilities.
 */
export class SandboxManager {
  private readonly records: SandboxRecords;
  /** Saved sandboxes (`checkpoint`), which creates copy. */
  readonly checkpoints: CheckpointStore;
  private readonly net: SandboxNetworking;
  private readonly cleanup: SandboxCleanup;
  private readonly recovery: SandboxRecovery;
  private readonly disk: PauseToDisk;
  private readonly shelf: PauseWithoutMemory;
  private readonly saves: SandboxSaves;
  private readonly log: Logger;
  /** The node's volumes: ext4 images mounted while it runs. */
  readonly volumes: VolumeDisks;
  private lock: FileLock | undefined;

  private constructor(readonly options: SandboxManagerOptions) {
    this.log = options.logger ?? pino({ level: 'silent' });
    this.volumes = new VolumeDisks(options.home, { defaultSizeMiB: options.volumeSizeMiB, logger: this.log });
    this.records = new SandboxRecords(join(options.home, 'sandboxes'), this.log, this.scope.cgroupParent);
    if (options.onState) this.records.on('state', options.onState);
    this.checkpoints = new CheckpointStore(join(options.home, 'checkpoints'), this.log);
    this.net = new SandboxNetworking({
      addressBlock: options.addressBlock,
      poolSize: options.networkPoolSize,
      dnsUpstreams: options.dnsUpstreams,
      scope: this.scope,
      userNamespaces: usesUserNamespaces(options),
      log: this.log,
    });
    this.cleanup = new SandboxCleanup(this.records, options.runtimes, this.net, this.volumes);
    this.disk = new PauseToDisk(this.records, this.log);
    this.shelf = new PauseWithoutMemory(this.records, this.log);
    this.saves = new SandboxSaves({
      records: this.records,
      checkpoints: this.checkpoints,
      runtime: (driver) => this.runtime(driver),
      suspendedDir: (r) => this.disk.dirOf(r),
      log: this.log,
    });
    this.recovery = new SandboxRecovery({
      records: this.records,
      runtimes: options.runtimes,
      net: this.net,
      cleanup: this.cleanup,
      shelf: this.shelf,
      scope: this.scope,
      log: this.log,
    });
  }

  private get scope() {
    return this.options.scope ?? DEFAULT_HOST_SCOPE;
  }

  /**
   * Loads the sandboxes on disk, adopting those still alive and ending the rest. Only
   * one manager runs per host (its sandboxes share the host's address block and names):
   * a second one fails with NodeBusyError.
   */
  static async open(options: SandboxManagerOptions): Promise<SandboxManager> {
    const { stateDir } = options.scope ?? DEFAULT_HOST_SCOPE;
    await mkdir(stateDir, { recursive: true });
    let lock: FileLock;
    try {
      // Waiting is bounded: a node that never closes (a test that failed half-way) must
      // not hang whoever comes next.
      lock = await lockFile(join(stateDir, 'node.lock'), {
        noWait: !options.waitForLock,
        signal: options.waitForLock ? AbortSignal.timeout(300_000) : undefined,
      });
    } catch (e) {
      if (e instanceof LockBusyError) {
        throw new NodeBusyError(
          stateDir === NODE_LOCK_DIR
            ? 'another aiva node runs on this host (aiva up, or an aiva sandbox command)'
            : `another aiva node runs with state directory ${stateDir}`,
        );
      }
      throw e;
    }
    let m: SandboxManager | undefined;
    try {
      m = new SandboxManager(options);
      m.lock = lock;
      await mkdir(m.records.dir, { recursive: true });
      if (usesUserNamespaces(options)) await letOtherIdsSearch([options.home, m.records.dir]);
      // Before recovery: a sandbox it boots again binds its volumes' mounts.
      const volumes = await adoptVolumes(m.volumes, m.records.dir, options.runtimes.values());
      if (volumes.mounted.length + volumes.converted.length > 0) m.log.info(volumes, 'volumes mounted');
      await m.recovery.recover();
      await m.checkpoints.open();
      await m.net.start(
        m.records.all().map((r) => ({ id: r.id, slot: r.slot, network: r.network, policy: r.networkPolicy })),
      );
    } catch (e) {
      await m?.net.close().catch(() => {});
      await lock.release();
      throw e;
    }
    m.recovery.watch(options.monitorIntervalMs ?? 1000);
    return m;
  }

  /**
   * Hashes of the templates and kernels that sandboxes and checkpoints recorded under
   * `home` use, read from their records (no lock needed): what `aiva image rm` must not
   * remove. A checkpoint's disk is a layer over its template's.
   */
  static async imagesInUse(home: string): Promise<Set<string>> {
    const used = await imagesOfRecords(join(home, 'sandboxes'));
    for (const c of await new CheckpointStore(join(home, 'checkpoints'), pino({ level: 'silent' })).list()) {
      used.add(c.template.hash);
      if (c.kernel) used.add(c.kernel);
    }
    return used;
  }

  /** Stops watching sandboxes and lets another node start; sandboxes keep running and a later `open` adopts them. */
  async close(): Promise<void> {
    this.recovery.unwatch();
    await this.records.idle();
    // With no sandbox left this removes aiva's host network setup; otherwise it stays for them.
    await this.net.close().catch((e: Error) => this.log.error({ err: e }, 'closing the network failed'));
    if (this.records.all().length === 0) {
      for (const rt of this.options.runtimes.values())
        await rt
          .releaseHostServices?.()
          .catch((e: Error) => this.log.error({ err: e }, 'releasing host services failed'));
      // A node of its own scope leaves no parent cgroup behind (`aiva` stays, as it always has).
      if (this.scope.cgroupParent !== DEFAULT_CGROUP_PARENT) await removeEmptyCgroup(this.scope.cgroupParent);
    }
    // What a remaining sandbox mounts stays mounted for it (the next node adopts both).
    await this.volumes.release(
      new Set(this.records.all().flatMap((r) => r.volumes?.map((v) => v.volumeId) ?? [])),
    );
    // The sandboxes are the next node's to adopt now.
    this.records.clear();
    await this.lock?.release();
    this.lock = undefined;
  }

  /** Hears every state change of every sandbox. */
  on(event: 'state', listener: (sandbox: SandboxInfo) => void): this {
    this.records.on(event, listener);
    return this;
  }

  off(event: 'state', listener: (sandbox: SandboxInfo) => void): this {
    this.records.off(event, listener);
    return this;
  }

  list(): SandboxInfo[] {
    return this.records.all().map((r) => ({ ...r }));
  }

  get(id: string): SandboxInfo {
    return { ...this.records.mustGet(id) };
  }

  get defaultDriver(): DriverName {
    return this.options.defaultDriver;
  }

  private runtime(driver: DriverName): SandboxRuntime {
    const rt = this.options.runtimes.get(driver);
    if (!rt) {
      const known = [...this.options.runtimes.keys()].join(', ');
      throw new SandboxSpecError(`the ${driver} runtime is not available on this host (available: ${known})`);
    }
    return rt;
  }

  private async spec(r: SandboxRecord): Promise<RuntimeSpec> {
    const template = await this.options.images.templateByHash(r.template.hash);
    if (!template)
      throw new Error(
        `template ${r.template.name} ${r.template.hash.slice(0, 12)} is no longer in the image store`,
      );
    const kernel = r.kernel ? await this.options.images.kernelByHash(r.kernel) : undefined;
    if (!r.network) throw new Error(`sandbox ${r.id} has no network`);
    const dir = this.records.dirOf(r.id);
    return {
      id: r.id,
      dir,
      cgroupParent: this.scope.cgroupParent,
      template,
      kernel,
      resources: r.resources,
      network: r.network,
      hostname: r.hostname,
      consoleLog: join(dir, 'console.log'),
      volumes: volumeSpecs(this.options.home, r.volumes),
    };
  }

  /**
   * Creates and starts a sandbox and waits until its envd answers. On any failure the
   * sandbox is removed with everything it took, and the error says why.
   */
  async create(options: CreateSandboxOptions = {}): Promise<SandboxInfo> {
    const id = options.id ?? newSandboxId();
    if (!SANDBOX_ID_PATTERN.test(id))
      throw new SandboxSpecError(`sandbox id "${id}" is not lower-case letters and digits`);
    if (this.records.has(id)) throw new SandboxSpecError(`sandbox ${id} already exists`);
    const networkPolicy = validateNetworkPolicy(options.network);
    const source = await resolveSource(options, {
      images: this.options.images,
      checkpoints: this.checkpoints,
      runtime: (d) => this.runtime(d),
      defaultDriver: this.options.defaultDriver,
    });
    const { driver, runtime, template, checkpoint } = source;
    const volumes = await checkVolumes(this.volumes, options.volumes, runtime);
    if (this.records.has(id)) throw new SandboxSpecError(`sandbox ${id} already exists`);
    const volumeMode = runtime.capabilities.volumes;
    // With the record's adding, nothing awaited between: two creates cannot both take a volume.
    if (volumeMode)
      checkVolumeHolders(
        this.records.all(),
        volumes,
        volumeMode,
        (d) => this.runtime(d).capabilities.volumes,
      );
    const reservation = this.net.reserve();
    const r: SandboxRecord = {
      version: SANDBOX_RECORD_VERSION,
      id,
      driver,
      template: { name: source.templateName, hash: template.hash },
      kernel: source.kernel?.hash,
      resources: source.resources,
      state: 'creating',
      slot: reservation.link.slot,
      networkPolicy,
      hostname: 'sandbox',
      accessToken: options.envd?.accessToken ?? randomBytes(24).toString('hex'),
      envdInit: envdInitOf(options.envd),
      ...(volumes ? { volumes } : {}),
      createdAt: new Date().toISOString(),
    };
    this.records.add(r);
    return this.records.serialize(id, async () => {
      try {
        await mkdir(this.records.dirOf(id), { recursive: true });
        // Saved before anything is made, so that a crash from here on is cleaned up on restart.
        await this.records.save(r);
        // A microVM's volumes become its disks (the cleanup gives them back).
        if (volumeMode === 'exclusive')
          for (const v of volumes ?? []) await this.volumes.hold(v.volumeId, id);
        r.network = await this.net.attach(id, reservation, runtime.capabilities.network, networkPolicy);
        await this.records.save(r);
        const spec = {
          ...(await this.spec(r)),
          restoreFrom: checkpoint && this.checkpoints.path(checkpoint.name),
        };
        await runtime.create(spec, options.signal);
        await bringUp(this.records, this.options, r, runtime, spec, {
          signal: options.signal,
          envd: options.envd,
          restoredToken: checkpoint?.memory ? checkpoint.accessToken : undefined,
        });
        await this.records.transition(r, 'ready');
        return { ...r };
      } catch (e) {
        const why = await explain(e as Error, this.records.ref(r));
        this.log.warn({ sandbox: id, err: why }, 'sandbox create failed');
        await this.cleanup
          .teardown(r)
          .catch((te: Error) => this.log.error({ sandbox: id, err: te }, 'cleanup failed'));
        this.records.delete(id);
        if (e instanceof SandboxSpecError) throw e;
        throw new Error(`sandbox ${id} could not start: ${why}`, { cause: e });
      }
    });
  }

  /**
   * Saves the sandbox under `name`, which creates copy (see SandboxSaves): a running
   * sandbox is paused for the while; its own state does not change.
   */
  async checkpoint(id: string, name: string, signal?: AbortSignal): Promise<CheckpointRecord> {
    return this.saves.checkpoint(id, name, signal);
  }

  /** Saves what the sandbox changed in its files as an overlay layer directory `dest`. */
  saveChanges(id: string, dest: string, signal?: AbortSignal): Promise<void> {
    return this.saves.saveChanges(id, dest, signal);
  }

  /** The checkpoint `name`; SandboxSpecError if there is none. */
  getCheckpoint(name: string): Promise<CheckpointRecord> {
    return this.checkpoints.get(name);
  }

  listCheckpoints(): Promise<CheckpointRecord[]> {
    return this.checkpoints.list();
  }

  /** Removes a checkpoint; false if there is none. Sandboxes made from it keep running. */
  removeCheckpoint(name: string): Promise<boolean> {
    return this.checkpoints.remove(name);
  }

  /**
   * Pauses the sandbox with its memory kept. Every driver freezes it in place; a driver
   * that can (`pauseToDisk`: microVMs) then saves it to disk (RAM, device state, disk)
   * and its process ends, so that a suspended VM holds no memory; its network stays. If
   * the save fails the VM stays paused in memory, which is still a pause. With `memory:
   * false` its processes end instead and only its disk is kept (`shelved`, see
   * PauseWithoutMemory).
   */
  async pause(id: string, options: { memory?: boolean } = {}): Promise<SandboxInfo> {
    return this.records.serialize(id, async () => {
      const r = this.records.mustGet(id);
      mustAllow(id, r.state, 'pause');
      const runtime = this.runtime(r.driver);
      if (options.memory === false) {
        await this.shelf.shelve(r, runtime);
        return { ...r };
      }
      const state = this.mustRun(r);
      await runtime.pause(this.records.ref(r), state);
      await this.records.transition(r, 'pause');
      if (runtime.capabilities.pauseToDisk) await this.disk.suspend(r, runtime, state);
      return { ...r };
    });
  }

  /**
   * Resumes a paused sandbox: where it was (memory kept), or by a boot afresh over its
   * disk when it was paused without memory. `memory: false` (E2B's connect `memory:
   * false`) boots it afresh whatever was kept: its memory is dropped first.
   */
  async resume(id: string, options: { memory?: boolean } = {}): Promise<SandboxInfo> {
    return this.records.serialize(id, async () => {
      const r = this.records.mustGet(id);
      mustAllow(id, r.state, 'resume');
      const runtime = this.runtime(r.driver);
      if (options.memory === false && r.state !== 'shelved') {
        PauseWithoutMemory.check(r, runtime);
        // Its disk is in the saved VM: restored, then shut down as a running sandbox is.
        if (r.state === 'suspended') {
          await this.disk.wake(r, runtime, await this.spec(r));
          await this.records.transition(r, 'resume');
        }
        await this.shelf.shelve(r, runtime);
      }
      if (r.state === 'shelved') await this.shelf.wake(r, runtime, await this.spec(r), this.options);
      else if (r.state === 'suspended') await this.disk.wake(r, runtime, await this.spec(r));
      else await runtime.resume(this.records.ref(r), this.mustRun(r));
      await this.records.transition(r, 'resume');
      return { ...r };
    });
  }

  /** Stops the sandbox at once and frees everything it took. */
  async kill(id: string): Promise<void> {
    await this.records.serialize(id, () => this.cleanup.end(this.records.mustGet(id)));
  }

  async stats(id: string): Promise<RuntimeStats> {
    const r = this.records.mustGet(id);
    mustAllow(id, r.state, 'measure');
    return this.runtime(r.driver).stats(this.records.ref(r), this.mustRun(r));
  }

  /** The sandbox's console output (its init and envd): the last `maxBytes` of it. */
  async consoleLog(id: string, maxBytes = 1024 * 1024): Promise<string> {
    this.records.mustGet(id);
    const text = await readFile(join(this.records.dirOf(id), 'console.log'), 'utf8').catch(() => '');
    return text.length > maxBytes ? text.slice(-maxBytes) : text;
  }

  /**
   * Replaces the sandbox's egress policy, live (E2B's `PUT /sandboxes/{id}/network`):
   * new connections follow it at once, and connections the sandbox had open are judged
   * again. A bad policy is a SandboxSpecError and changes nothing.
   */
  async updateNetwork(id: string, policy: NetworkPolicy): Promise<SandboxInfo> {
    const networkPolicy = validateNetworkPolicy(policy);
    return this.records.serialize(id, async () => {
      const r = this.records.mustGet(id);
      mustAllow(id, r.state, 'change the network policy of');
      await this.net.updatePolicy(id, networkPolicy);
      r.networkPolicy = networkPolicy;
      await this.records.save(r);
      return { ...r };
    });
  }

  /**
   * Gives a running sandbox a new identity through envd's `/init`: a new access token
   * (the old one stops working at once), env vars, the clock. Used to hand a pre-made
   * sandbox to its tenant.
   */
  async reinit(
    id: string,
    init: { accessToken: string; envVars?: Record<string, string> },
  ): Promise<SandboxInfo> {
    return this.records.serialize(id, async () => {
      const r = this.records.mustGet(id);
      mustAllow(id, r.state, 're-initialise');
      await initEnvd(
        this.address(r),
        { timestamp: new Date().toISOString(), envVars: init.envVars, accessToken: init.accessToken },
        r.accessToken,
      );
      r.accessToken = init.accessToken;
      if (init.envVars) r.envdInit = { ...r.envdInit, envVars: { ...r.envdInit?.envVars, ...init.envVars } };
      await this.records.save(r);
      return { ...r };
    });
  }

  /** Resolves once the pool of ready network namespaces is full (`networkPoolSize`). */
  fillNetworkPool(): Promise<void> {
    return this.net.poolFilled();
  }

  /** Where the node reaches a port of the sandbox; SandboxNotFoundError if it cannot be reached. */
  endpoint(id: string, port: number): { host: string; port: number } {
    const r = this.records.mustGet(id);
    try {
      mustAllow(id, r.state, 'reach');
      return { host: this.address(r), port };
    } catch {
      throw new SandboxNotFoundError(id);
    }
  }

  /** Bytes the sandbox has sent out of the host so far (undefined: not known). */
  egressBytes(id: string): Promise<number | undefined> {
    return this.net.egressBytes(id);
  }

  /** Kills every sandbox (node shutdown with cleanup). */
  /**
   * Kills every sandbox; with `keepShelved`, those paused without memory stay (their disk
   * and record), for the next node on this host to adopt (aiva up's shutdown keeps the
   * environments the server shelved).
   */
  async killAll(options: { keepShelved?: boolean } = {}): Promise<void> {
    const ids = this.records
      .all()
      .filter((r) => !(options.keepShelved && r.state === 'shelved'))
      .map((r) => r.id);
    await Promise.allSettled(ids.map((id) => this.kill(id)));
  }

  private address(r: SandboxRecord): string {
    if (!r.network) throw new Error(`sandbox ${r.id} has no network`);
    return r.network.address;
  }

  private mustRun(r: SandboxRecord): RuntimeState {
    if (!r.runtime) throw new Error(`sandbox ${r.id} has no running process`);
    return r.runtime;
  }
}
