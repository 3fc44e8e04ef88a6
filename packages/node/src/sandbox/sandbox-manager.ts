import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, totalmem } from 'node:os';
import { join } from 'node:path';
import type { EnvdInit } from '@aiva/protocol';
import { type Logger, pino } from 'pino';
import { initEnvd, waitForEnvd } from '../envd/envd-http.js';
import { Cgroup, childCgroups } from '../host/cgroups.js';
import { runCommand } from '../host/command.js';
import { type FileLock, LockBusyError, lockFile } from '../host/file-lock.js';
import { mountedUnder, unmountAll } from '../host/mounts.js';
import type { BuildReporter } from '../image/build-reporter.js';
import type { ImageStore } from '../image/image-store.js';
import { type NetworkPolicy, validateNetworkPolicy } from '../network/network-policy.js';
import { SandboxNetworking } from '../network/sandbox-networking.js';
import {
  type CheckpointResult,
  type DriverName,
  type RuntimeSpec,
  type RuntimeState,
  type RuntimeStats,
  type SandboxNetworkAttachment,
  type SandboxRef,
  type SandboxResources,
  type SandboxRuntime,
  SandboxSpecError,
} from '../runtime/types.js';
import { nextState, type SandboxState, SandboxStateError, type SandboxTransition } from './sandbox-state.js';

/** What the node keeps about a sandbox, in `<data dir>/sandboxes/<id>/sandbox.json`. */
export interface SandboxRecord {
  id: string;
  driver: DriverName;
  template: { name: string; hash: string };
  kernel?: string;
  resources: SandboxResources;
  state: SandboxState;
  /** Why the sandbox is in `error`. */
  error?: string;
  slot: number;
  network?: SandboxNetworkAttachment;
  /** Its egress policy (validated and normalized), applied on create, replaced by updateNetwork, re-applied on adoption. */
  networkPolicy?: NetworkPolicy;
  runtime?: RuntimeState;
  /**
   * Paused to disk (microVMs): the VM was saved into `suspended/` in the sandbox's
   * directory and its process ended; resume restores it from there.
   */
  suspended?: boolean;
  hostname: string;
  /** envd's access token: every call to the sandbox's envd must carry it. */
  accessToken: string;
  /** The version the sandbox's envd reports. */
  envdVersion?: string;
  createdAt: string;
  startedAt?: string;
}

/** A sandbox as the node shows it. */
export type SandboxInfo = Readonly<SandboxRecord>;

/**
 * A saved sandbox (`checkpoint`), in `<data dir>/checkpoints/<name>/`: what its driver
 * saved, and what a create from it needs to make an independent copy.
 */
export interface CheckpointRecord {
  name: string;
  /** The sandbox it was taken from. */
  source: string;
  driver: DriverName;
  template: { name: string; hash: string };
  kernel?: string;
  resources: SandboxResources;
  networkPolicy?: NetworkPolicy;
  /** Whether processes and memory were saved, or the filesystem only. */
  memory: boolean;
  /** The token the saved envd holds (memory checkpoints): a copy's `/init` needs it to take its own. */
  accessToken?: string;
  /** What the checkpoint takes on disk. */
  bytes: number;
  createdAt: string;
}

const CHECKPOINT_NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

export interface CreateSandboxOptions {
  /** Chosen by the caller (the server) or generated. Lower-case letters and digits. */
  id?: string;
  template?: string;
  driver?: DriverName;
  vcpus?: number;
  memoryMiB?: number;
  diskMiB?: number;
  /** Sent to envd's /init once it answers: env vars, default user …; an access token is made if none is given. */
  envd?: EnvdInit;
  /** Egress policy (E2B's `allow_internet_access` and `network.allowOut/denyOut`); checked before anything is made. */
  network?: NetworkPolicy;
  signal?: AbortSignal;
  /** Progress of an image build, if the template has to be built first. */
  reporter?: BuildReporter;
  /**
   * Start from this checkpoint (its name) instead of from a template: the template,
   * driver and size are the checkpoint's, and `template`, `driver` and sizes must not
   * say otherwise.
   */
  fromCheckpoint?: string;
}

export interface SandboxManagerOptions {
  home: string;
  images: ImageStore;
  runtimes: Map<DriverName, SandboxRuntime>;
  defaultDriver: DriverName;
  /** IPv4 block cut into one /30 per sandbox. */
  addressBlock?: string;
  /** Network namespaces kept ready ahead of creates (default 0). */
  networkPoolSize?: number;
  /** Where the sandboxes' DNS forwarder sends queries: `a.b.c.d[:port]` (default: /etc/resolv.conf's nameservers). */
  dnsUpstreams?: string[];
  /** How long a new sandbox has to answer on envd, per driver. */
  readyTimeoutMs?: Partial<Record<DriverName, number>>;
  /** How often to look for sandboxes whose process died. */
  monitorIntervalMs?: number;
  /** Wait (up to 5 minutes) for another node on this host to close instead of failing (tests run one after another). */
  waitForLock?: boolean;
  logger?: Logger;
}

/** Host-wide: one node per host, whatever its data directory. */
const NODE_LOCK_DIR = '/run/aiva';

export class NodeBusyError extends Error {
  override name = 'NodeBusyError';
}

export class SandboxNotFoundError extends Error {
  override name = 'SandboxNotFoundError';
  constructor(readonly id: string) {
    super(`sandbox ${id} does not exist`);
  }
}

async function readCheckpoint(dir: string): Promise<CheckpointRecord | undefined> {
  return readFile(join(dir, 'checkpoint.json'), 'utf8').then(
    (t) => JSON.parse(t) as CheckpointRecord,
    () => undefined,
  );
}

async function readCheckpoints(dir: string): Promise<CheckpointRecord[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const records = await Promise.all(names.map((n) => readCheckpoint(join(dir, n))));
  return records.filter((c): c is CheckpointRecord => c !== undefined);
}

/** Bytes a directory's files take on disk (sparse files count what is allocated). */
async function diskUsage(dir: string): Promise<number> {
  const { stdout } = await runCommand('du', ['-s', '--block-size=1', dir]);
  return Number(stdout.split(/\s/)[0]);
}

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
export const SANDBOX_ID_PATTERN = /^[a-z0-9]{1,40}$/;

export function newSandboxId(): string {
  const bytes = randomBytes(20);
  return Array.from(bytes, (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('');
}

const DEFAULT_READY_TIMEOUT: Record<DriverName, number> = {
  container: 30_000,
  'qemu-microvm': 120_000,
  firecracker: 30_000,
};

export interface SandboxManagerEvents {
  state: [SandboxInfo];
}

/**
 * Owns every sandbox of this host: creates them (image, network, runtime, envd), moves
 * them through their states, notices when one dies, and frees everything a sandbox
 * took when it ends. Records live on disk so that a restarted node finds its sandboxes
 * again: `open` adopts the live ones and cleans up the rest.
 */
export class SandboxManager extends EventEmitter<SandboxManagerEvents> {
  private readonly records = new Map<string, SandboxRecord>();
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly net: SandboxNetworking;
  private readonly dir: string;
  private readonly checkpointDir: string;
  private readonly log: Logger;
  private monitor: NodeJS.Timeout | undefined;
  private lock: FileLock | undefined;

  private constructor(readonly options: SandboxManagerOptions) {
    super();
    this.dir = join(options.home, 'sandboxes');
    this.checkpointDir = join(options.home, 'checkpoints');
    this.log = options.logger ?? pino({ level: 'silent' });
    this.net = new SandboxNetworking({
      addressBlock: options.addressBlock,
      poolSize: options.networkPoolSize,
      dnsUpstreams: options.dnsUpstreams,
      stateDir: NODE_LOCK_DIR,
      log: this.log,
    });
  }

  /**
   * Loads the sandboxes on disk, adopting those still alive and cleaning up the rest.
   * Only one manager runs per host (its sandboxes share the host's address block and
   * names): a second one fails with NodeBusyError.
   */
  static async open(options: SandboxManagerOptions): Promise<SandboxManager> {
    await mkdir(NODE_LOCK_DIR, { recursive: true });
    let lock: FileLock;
    try {
      // Waiting is bounded: a node that never closes (a test that failed half-way) must
      // not hang whoever comes next.
      lock = await lockFile(join(NODE_LOCK_DIR, 'node.lock'), {
        noWait: !options.waitForLock,
        signal: options.waitForLock ? AbortSignal.timeout(300_000) : undefined,
      });
    } catch (e) {
      if (e instanceof LockBusyError) {
        throw new NodeBusyError('another aiva node runs on this host (aiva up, or an aiva sandbox command)');
      }
      throw e;
    }
    let m: SandboxManager | undefined;
    try {
      m = new SandboxManager(options);
      m.lock = lock;
      await mkdir(m.dir, { recursive: true });
      await m.recover();
      await m.net.start(
        [...m.records.values()].map((r) => ({
          id: r.id,
          slot: r.slot,
          network: r.network,
          policy: r.networkPolicy,
        })),
      );
    } catch (e) {
      await m?.net.close().catch(() => {});
      await lock.release();
      throw e;
    }
    m.monitor = setInterval(() => void m.checkAlive(), options.monitorIntervalMs ?? 1000);
    m.monitor.unref();
    return m;
  }

  /**
   * Hashes of the templates and kernels that sandboxes recorded under `home` use, read
   * from their records (no lock needed): what `aiva image rm` must not remove.
   */
  static async imagesInUse(home: string): Promise<Set<string>> {
    const used = new Set<string>();
    const dir = join(home, 'sandboxes');
    for (const id of await readdir(dir).catch(() => [] as string[])) {
      const r = await readFile(join(dir, id, 'sandbox.json'), 'utf8').then(
        (t) => JSON.parse(t) as SandboxRecord,
        () => undefined,
      );
      if (!r) continue;
      used.add(r.template.hash);
      if (r.kernel) used.add(r.kernel);
    }
    // A checkpoint's disk is a layer over its template's.
    for (const c of await readCheckpoints(join(home, 'checkpoints'))) {
      used.add(c.template.hash);
      if (c.kernel) used.add(c.kernel);
    }
    return used;
  }

  /** Stops watching sandboxes and lets another node start; sandboxes keep running and a later `open` adopts them. */
  async close(): Promise<void> {
    clearInterval(this.monitor);
    this.monitor = undefined;
    await Promise.allSettled([...this.queues.values()]);
    // With no sandbox left this removes aiva's host network setup; otherwise it stays for them.
    await this.net.close().catch((e: Error) => this.log.error({ err: e }, 'closing the network failed'));
    // The sandboxes are the next node's to adopt now.
    this.records.clear();
    await this.lock?.release();
    this.lock = undefined;
  }

  list(): SandboxInfo[] {
    return [...this.records.values()].map((r) => ({ ...r }));
  }

  get(id: string): SandboxInfo {
    const r = this.records.get(id);
    if (!r) throw new SandboxNotFoundError(id);
    return { ...r };
  }

  get defaultDriver(): DriverName {
    return this.options.defaultDriver;
  }

  /** Runs `op` after every operation already queued for `id`. */
  private serialize<T>(id: string, op: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(op, op);
    const settled = next.catch(() => {});
    this.queues.set(id, settled);
    void settled.then(() => {
      if (this.queues.get(id) === settled) this.queues.delete(id);
    });
    return next;
  }

  private sandboxDir(id: string): string {
    return join(this.dir, id);
  }

  private async save(r: SandboxRecord): Promise<void> {
    const file = join(this.sandboxDir(r.id), 'sandbox.json');
    // It holds the sandbox's envd access token: root only.
    await writeFile(`${file}.tmp`, `${JSON.stringify(r, null, 2)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  private async transition(r: SandboxRecord, op: SandboxTransition, error?: string): Promise<void> {
    r.state = nextState(r.id, r.state, op);
    if (error !== undefined) r.error = error;
    if (r.state !== 'stopped') await this.save(r);
    this.log.info({ sandbox: r.id, state: r.state, error }, `sandbox ${r.state}`);
    this.emit('state', { ...r });
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
    const dir = this.sandboxDir(r.id);
    return {
      id: r.id,
      dir,
      template,
      kernel,
      resources: r.resources,
      network: r.network,
      hostname: r.hostname,
      consoleLog: join(dir, 'console.log'),
    };
  }

  private validate(
    options: CreateSandboxOptions,
    defaults: { vcpus: number; memoryMiB: number; diskMiB: number },
  ) {
    const resources: SandboxResources = {
      vcpus: options.vcpus ?? defaults.vcpus,
      memoryMiB: options.memoryMiB ?? defaults.memoryMiB,
      diskMiB: options.diskMiB ?? defaults.diskMiB,
    };
    const cores = availableParallelism();
    const hostMiB = Math.floor(totalmem() / 1024 / 1024);
    if (!Number.isInteger(resources.vcpus) || resources.vcpus < 1 || resources.vcpus > cores) {
      throw new SandboxSpecError(
        `vcpus must be a whole number from 1 to ${cores} (this host's cores), not ${resources.vcpus}`,
      );
    }
    if (
      !Number.isInteger(resources.memoryMiB) ||
      resources.memoryMiB < 128 ||
      resources.memoryMiB > hostMiB
    ) {
      throw new SandboxSpecError(`memory must be from 128 to ${hostMiB} MiB, not ${resources.memoryMiB}`);
    }
    if (
      !Number.isInteger(resources.diskMiB) ||
      resources.diskMiB < defaults.diskMiB ||
      resources.diskMiB > 1_048_576
    ) {
      throw new SandboxSpecError(
        `disk must be from ${defaults.diskMiB} MiB (the template's size) to 1 TiB, not ${resources.diskMiB}`,
      );
    }
    return resources;
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
    const { driver, templateName, template, resources, kernel, checkpoint } = options.fromCheckpoint
      ? await this.fromCheckpoint(options.fromCheckpoint, options)
      : await this.fromTemplate(options);
    const runtime = this.runtime(driver);
    if (this.records.has(id)) throw new SandboxSpecError(`sandbox ${id} already exists`);
    const reservation = this.net.reserve();
    const r: SandboxRecord = {
      id,
      driver,
      template: { name: templateName, hash: template.hash },
      kernel: kernel?.hash,
      resources,
      state: 'creating',
      slot: reservation.link.slot,
      networkPolicy,
      hostname: 'sandbox',
      accessToken: options.envd?.accessToken ?? randomBytes(24).toString('hex'),
      createdAt: new Date().toISOString(),
    };
    this.records.set(id, r);
    return this.serialize(id, async () => {
      let spec: RuntimeSpec | undefined;
      try {
        await mkdir(this.sandboxDir(id), { recursive: true });
        // Saved before anything is made, so that a crash from here on is cleaned up on restart.
        await this.save(r);
        r.network = await this.net.attach(
          id,
          reservation,
          driver === 'container' ? 'namespace' : 'tap',
          networkPolicy,
        );
        await this.save(r);
        spec = { ...(await this.spec(r)), restoreFrom: checkpoint && this.checkpointPath(checkpoint.name) };
        await runtime.create(spec, options.signal);
        r.runtime = await runtime.start(spec, options.signal);
        r.startedAt = new Date().toISOString();
        await this.save(r);
        const state = r.runtime;
        r.envdVersion = await waitForEnvd(r.network.address, {
          timeoutMs: this.options.readyTimeoutMs?.[driver] ?? DEFAULT_READY_TIMEOUT[driver],
          signal: options.signal,
          stillAlive: () => runtime.alive(state),
        });
        // A restored envd still holds the token of the sandbox it was saved from. A VM
        // restored from saved memory also holds its random state: the host reseeds it.
        await initEnvd(
          r.network.address,
          {
            timestamp: new Date().toISOString(),
            entropy: driver === 'container' ? undefined : randomBytes(64).toString('hex'),
            defaultUser: template.defaults.user,
            defaultWorkdir: template.defaults.workdir,
            ...options.envd,
            accessToken: r.accessToken,
          },
          checkpoint?.memory ? checkpoint.accessToken : undefined,
        );
        await this.transition(r, 'ready');
        return { ...r };
      } catch (e) {
        const why = await this.explain(e as Error, this.ref(r));
        this.log.warn({ sandbox: id, err: why }, 'sandbox create failed');
        await this.teardown(r).catch((te: Error) =>
          this.log.error({ sandbox: id, err: te }, 'cleanup failed'),
        );
        this.records.delete(id);
        if (e instanceof SandboxSpecError) throw e;
        throw new Error(`sandbox ${id} could not start: ${why}`, { cause: e });
      }
    });
  }

  private async fromTemplate(options: CreateSandboxOptions) {
    const driver = options.driver ?? this.options.defaultDriver;
    this.runtime(driver);
    const templateName = options.template ?? 'base';
    const template = await this.options.images.ensureTemplate(templateName, {
      reporter: options.reporter,
      signal: options.signal,
    });
    const resources = this.validate(options, {
      vcpus: Math.min(template.defaults.vcpus, availableParallelism()),
      memoryMiB: template.defaults.memoryMiB,
      diskMiB: template.diskSizeMiB,
    });
    const kernel = driver === 'container' ? undefined : await this.options.images.ensureKernel(options);
    return { driver, templateName, template, resources, kernel, checkpoint: undefined };
  }

  /** What a create from the checkpoint `name` runs: the checkpoint's driver, template, kernel and size. */
  private async fromCheckpoint(name: string, options: CreateSandboxOptions) {
    const checkpoint = await this.getCheckpoint(name);
    const { driver, resources } = checkpoint;
    const differs = [
      options.driver !== undefined && options.driver !== driver && `driver ${options.driver}`,
      options.template !== undefined &&
        options.template !== checkpoint.template.name &&
        `template ${options.template}`,
      options.vcpus !== undefined && options.vcpus !== resources.vcpus && `${options.vcpus} vcpus`,
      options.memoryMiB !== undefined &&
        options.memoryMiB !== resources.memoryMiB &&
        `${options.memoryMiB} MiB`,
      options.diskMiB !== undefined &&
        options.diskMiB !== resources.diskMiB &&
        `a ${options.diskMiB} MiB disk`,
    ].filter(Boolean);
    if (differs.length > 0)
      throw new SandboxSpecError(
        `checkpoint ${name} is a ${driver} sandbox of its own size: not ${differs.join(', ')}`,
      );
    this.runtime(driver);
    const template = await this.options.images.templateByHash(checkpoint.template.hash);
    const kernel = checkpoint.kernel ? await this.options.images.kernelByHash(checkpoint.kernel) : undefined;
    if (!template || (checkpoint.kernel && !kernel))
      throw new SandboxSpecError(`checkpoint ${name} needs an image that is no longer in the store`);
    return { driver, templateName: checkpoint.template.name, template, resources, kernel, checkpoint };
  }

  private checkpointPath(name: string): string {
    return join(this.checkpointDir, name);
  }

  /**
   * Saves the sandbox under `name` such that creates from it (`fromCheckpoint`) make
   * independent copies: its memory and processes where the driver can (microVMs), its
   * files always. A running sandbox is paused for the while and resumed after; the
   * sandbox's own state does not change. Nothing is left of a checkpoint that failed.
   */
  async checkpoint(id: string, name: string, signal?: AbortSignal): Promise<CheckpointRecord> {
    if (!CHECKPOINT_NAME_PATTERN.test(name))
      throw new SandboxSpecError(`checkpoint name "${name}" is not lower-case letters, digits, - and _`);
    return this.serialize(id, async () => {
      const r = this.mustGet(id);
      if (r.state !== 'running' && r.state !== 'paused')
        throw new SandboxStateError(id, r.state, 'checkpoint');
      const dest = this.checkpointPath(name);
      if (
        await stat(dest).then(
          () => true,
          () => false,
        )
      )
        throw new SandboxSpecError(`checkpoint ${name} already exists`);
      const runtime = this.runtime(r.driver);
      await mkdir(join(this.checkpointDir, 'tmp'), { recursive: true });
      const work = await mkdtemp(join(this.checkpointDir, 'tmp', `${name}.`));
      try {
        let saved: CheckpointResult;
        if (r.suspended) {
          // Paused to disk: what a checkpoint would hold is there already.
          await runCommand('cp', ['-a', '--sparse=always', `${this.suspendedDir(r)}/.`, work]);
          saved = { memory: true };
        } else {
          const state = this.mustRun(r);
          const running = r.state === 'running';
          if (running) await runtime.pause(this.ref(r), state);
          try {
            saved = await runtime.checkpoint(this.ref(r), state, work, signal);
          } finally {
            if (running) await runtime.resume(this.ref(r), state);
          }
        }
        const record: CheckpointRecord = {
          name,
          source: id,
          driver: r.driver,
          template: r.template,
          kernel: r.kernel,
          resources: r.resources,
          networkPolicy: r.networkPolicy,
          memory: saved.memory,
          accessToken: saved.memory ? r.accessToken : undefined,
          bytes: await diskUsage(work),
          createdAt: new Date().toISOString(),
        };
        // It may hold an access token: root only.
        await writeFile(join(work, 'checkpoint.json'), `${JSON.stringify(record, null, 2)}\n`, {
          mode: 0o600,
        });
        await rename(work, dest);
        this.log.info({ sandbox: id, checkpoint: name, bytes: record.bytes }, 'checkpoint saved');
        return record;
      } catch (e) {
        await rm(work, { recursive: true, force: true });
        throw e;
      }
    });
  }

  /** The checkpoint `name`; SandboxSpecError if there is none. */
  async getCheckpoint(name: string): Promise<CheckpointRecord> {
    const record = CHECKPOINT_NAME_PATTERN.test(name)
      ? await readCheckpoint(this.checkpointPath(name))
      : undefined;
    if (!record) throw new SandboxSpecError(`there is no checkpoint ${name}`);
    return record;
  }

  listCheckpoints(): Promise<CheckpointRecord[]> {
    return readCheckpoints(this.checkpointDir);
  }

  /**
   * Removes a checkpoint; false if there is none. Sandboxes made from it keep running:
   * each has its own copy of what it needed.
   */
  async removeCheckpoint(name: string): Promise<boolean> {
    if (!CHECKPOINT_NAME_PATTERN.test(name)) return false;
    const dir = this.checkpointPath(name);
    if (!(await readCheckpoint(dir))) return false;
    await rm(dir, { recursive: true, force: true });
    return true;
  }

  /** The error message, with the end of the sandbox's console log when it tells more. */
  private async explain(e: Error, sandbox: SandboxRef | undefined): Promise<string> {
    if (!sandbox || e instanceof SandboxSpecError) return e.message;
    const console = await readFile(join(sandbox.dir, 'console.log'), 'utf8').catch(() => '');
    const tail = console.trim().split('\n').slice(-10).join('\n');
    return tail ? `${e.message}\nconsole:\n${tail}` : e.message;
  }

  private ref(r: SandboxRecord): SandboxRef {
    return { id: r.id, dir: this.sandboxDir(r.id) };
  }

  /** Frees everything the sandbox took: runtime, network, address, directory. */
  private async teardown(r: SandboxRecord): Promise<void> {
    const runtime = this.options.runtimes.get(r.driver);
    const dir = this.sandboxDir(r.id);
    if (runtime) await runtime.destroy(this.ref(r), r.runtime);
    await this.net.detach({ id: r.id, slot: r.slot, network: r.network });
    const mounts = await mountedUnder(dir);
    if (mounts.length > 0) throw new Error(`not removing ${dir}: still mounted: ${mounts.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  }

  private suspendedDir(r: SandboxRecord): string {
    return join(this.sandboxDir(r.id), 'suspended');
  }

  /**
   * Pauses the sandbox with its memory kept. Containers are frozen in place. MicroVMs
   * are saved to disk (RAM, device state, disk) and their process ends, so that a paused
   * VM holds no memory; its network stays. If the save fails the VM stays frozen in
   * memory instead, which is still a pause.
   */
  async pause(id: string): Promise<SandboxInfo> {
    return this.serialize(id, async () => {
      const r = this.mustGet(id);
      nextState(id, r.state, 'pause');
      const runtime = this.runtime(r.driver);
      const state = this.mustRun(r);
      await runtime.pause(this.ref(r), state);
      if (r.driver !== 'container') await this.suspend(r, runtime, state);
      await this.transition(r, 'pause');
      return { ...r };
    });
  }

  private async suspend(r: SandboxRecord, runtime: SandboxRuntime, state: RuntimeState): Promise<void> {
    const dir = this.suspendedDir(r);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir);
    try {
      await runtime.checkpoint(this.ref(r), state, dir);
    } catch (e) {
      await rm(dir, { recursive: true, force: true });
      this.log.warn(
        { sandbox: r.id, err: e },
        'saving the paused VM to disk failed: it stays paused in memory',
      );
      return;
    }
    // Marked before the process goes: a crash from here on finds the saved VM on restart.
    r.suspended = true;
    await this.save(r);
    // Its state is saved: no need to let the guest wind down.
    await runtime.stop(this.ref(r), state, 1000);
    r.runtime = undefined;
    await this.save(r);
    this.log.info({ sandbox: r.id }, 'paused VM saved to disk; its process ended');
  }

  async resume(id: string): Promise<SandboxInfo> {
    return this.serialize(id, async () => {
      const r = this.mustGet(id);
      nextState(id, r.state, 'resume');
      const runtime = this.runtime(r.driver);
      if (r.suspended) await this.wake(r, runtime);
      else await runtime.resume(this.ref(r), this.mustRun(r));
      await this.transition(r, 'resume');
      return { ...r };
    });
  }

  /** Restores a VM paused to disk, in the same sandbox: same id, network, token. */
  private async wake(r: SandboxRecord, runtime: SandboxRuntime): Promise<void> {
    const spec = { ...(await this.spec(r)), restoreFrom: this.suspendedDir(r) };
    r.runtime = await runtime.start(spec);
    r.suspended = false;
    await this.save(r);
    await rm(this.suspendedDir(r), { recursive: true, force: true });
    // The clock stood still while it was saved, and its random state is an old one. The VM
    // runs either way: a failure here is logged, not a failed resume.
    await initEnvd(
      r.network?.address ?? '',
      { timestamp: new Date().toISOString(), entropy: randomBytes(64).toString('hex') },
      r.accessToken,
    ).catch((e: Error) =>
      this.log.warn({ sandbox: r.id, err: e }, 'resumed VM did not take the clock and entropy'),
    );
  }

  /** Stops the sandbox at once and frees everything it took. */
  async kill(id: string): Promise<void> {
    await this.serialize(id, async () => {
      const r = this.mustGet(id);
      await this.transition(r, 'stop');
      try {
        await this.teardown(r);
      } catch (e) {
        await this.transition(r, 'fail', `cleanup failed: ${(e as Error).message}`);
        throw e;
      }
      await this.transition(r, 'stopped');
      this.records.delete(id);
    });
  }

  async stats(id: string): Promise<RuntimeStats> {
    const r = this.mustGet(id);
    return this.runtime(r.driver).stats(this.ref(r), this.mustRun(r));
  }

  /** The sandbox's console output (its init and envd): the last `maxBytes` of it. */
  async consoleLog(id: string, maxBytes = 1024 * 1024): Promise<string> {
    this.mustGet(id);
    const file = join(this.sandboxDir(id), 'console.log');
    const text = await readFile(file, 'utf8').catch(() => '');
    return text.length > maxBytes ? text.slice(-maxBytes) : text;
  }

  /**
   * Replaces the sandbox's egress policy, live (E2B's `PUT /sandboxes/{id}/network`):
   * new connections follow it at once, and connections the sandbox had open are judged
   * again. A bad policy is a SandboxSpecError and changes nothing.
   */
  async updateNetwork(id: string, policy: NetworkPolicy): Promise<SandboxInfo> {
    const networkPolicy = validateNetworkPolicy(policy);
    return this.serialize(id, async () => {
      const r = this.mustGet(id);
      if ((r.state !== 'running' && r.state !== 'paused') || !r.network) {
        throw new SandboxStateError(id, r.state, 'change the network policy of');
      }
      await this.net.updatePolicy(id, networkPolicy);
      r.networkPolicy = networkPolicy;
      await this.save(r);
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
    return this.serialize(id, async () => {
      const r = this.mustGet(id);
      if (r.state !== 'running' || !r.network) throw new SandboxStateError(id, r.state, 're-initialise');
      await initEnvd(
        r.network.address,
        { timestamp: new Date().toISOString(), envVars: init.envVars, accessToken: init.accessToken },
        r.accessToken,
      );
      r.accessToken = init.accessToken;
      await this.save(r);
      return { ...r };
    });
  }

  /** Resolves once the pool of ready network namespaces is full (`networkPoolSize`). */
  fillNetworkPool(): Promise<void> {
    return this.net.poolFilled();
  }

  /** Where the node reaches a port of the sandbox. */
  endpoint(id: string, port: number): { host: string; port: number } {
    const r = this.mustGet(id);
    if (!r.network || (r.state !== 'running' && r.state !== 'paused')) {
      throw new SandboxNotFoundError(id);
    }
    return { host: r.network.address, port };
  }

  /** Kills every sandbox (node shutdown with cleanup). */
  async killAll(): Promise<void> {
    await Promise.allSettled([...this.records.keys()].map((id) => this.kill(id)));
  }

  private mustGet(id: string): SandboxRecord {
    const r = this.records.get(id);
    if (!r) throw new SandboxNotFoundError(id);
    return r;
  }

  private mustRun(r: SandboxRecord): RuntimeState {
    if (!r.runtime) throw new Error(`sandbox ${r.id} has no running process`);
    return r.runtime;
  }

  /** Marks sandboxes whose process died as failed and frees what they took. */
  private async checkAlive(): Promise<void> {
    for (const r of this.records.values()) {
      if ((r.state !== 'running' && r.state !== 'paused') || !r.runtime) continue;
      const runtime = this.options.runtimes.get(r.driver);
      const state = r.runtime;
      if (!runtime || (await runtime.alive(state))) continue;
      await this.serialize(r.id, async () => {
        // What ran before it got here may have changed the sandbox: a pause to disk ends
        // the process on purpose, a resume starts another.
        if (r.runtime !== state || (r.state !== 'running' && r.state !== 'paused')) return;
        const why = await this.explain(
          new Error(`the ${r.driver} process (pid ${state.pid}) exited`),
          this.ref(r),
        );
        // Free first, so that whoever hears of the failure finds nothing held.
        await this.releaseResources(r);
        await this.transition(r, 'fail', why);
      }).catch((e: Error) => this.log.error({ sandbox: r.id, err: e }, 'crash handling failed'));
    }
  }

  /** Frees a failed sandbox's runtime and network but keeps its record and logs for inspection. */
  private async releaseResources(r: SandboxRecord): Promise<void> {
    await this.options.runtimes.get(r.driver)?.destroy(this.ref(r), r.runtime);
    await this.net.detach({ id: r.id, slot: r.slot, network: r.network });
    r.runtime = undefined;
    r.network = undefined;
  }

  /** On start: adopt live sandboxes, clean up dead or half-made ones, remove orphans. */
  private async recover(): Promise<void> {
    for (const id of await readdir(this.dir)) {
      const file = join(this.sandboxDir(id), 'sandbox.json');
      const r = await readFile(file, 'utf8').then(
        (t) => JSON.parse(t) as SandboxRecord,
        () => undefined,
      );
      if (!r) {
        this.log.warn({ dir: this.sandboxDir(id) }, 'removing a sandbox directory without a record');
        await unmountAll(this.sandboxDir(id));
        await rm(this.sandboxDir(id), { recursive: true });
        continue;
      }
      this.net.claim(r.slot);
      this.records.set(r.id, r);
      const runtime = this.options.runtimes.get(r.driver);
      if (r.suspended && (r.state === 'running' || r.state === 'paused')) {
        // Saved to disk (the node may have stopped before the pause was recorded, or before
        // the process ended): nothing runs, the saved VM waits for a resume.
        if (r.runtime) await runtime?.stop(this.ref(r), r.runtime, 0);
        r.runtime = undefined;
        r.state = 'paused';
        await this.save(r);
        this.log.info({ sandbox: r.id }, 'adopted a sandbox paused to disk');
        continue;
      }
      const live =
        (r.state === 'running' || r.state === 'paused') && r.runtime && runtime
          ? await runtime.alive(r.runtime)
          : false;
      if (live) {
        this.log.info({ sandbox: r.id, state: r.state }, 'adopted a running sandbox');
        continue;
      }
      if (r.state === 'error' && !r.runtime && !r.network) continue;
      this.log.warn({ sandbox: r.id, state: r.state }, 'cleaning up a sandbox that did not survive');
      try {
        await this.teardown(r);
        this.records.delete(r.id);
      } catch (e) {
        r.state = 'error';
        r.error = `cleanup after restart failed: ${(e as Error).message}`;
        await this.save(r).catch(() => {});
      }
    }
    await this.removeOrphans();
    // Checkpoints that were being written when the node stopped.
    await rm(join(this.checkpointDir, 'tmp'), { recursive: true, force: true });
  }

  /**
   * What no record owns (a node that crashed between two steps, or a data directory
   * that was removed): cgroups, runtime state, network namespaces. There is one node per
   * host (the node lock), so whatever carries our names and is not ours is debris.
   */
  private async removeOrphans(): Promise<void> {
    const keep = new Set(this.records.keys());
    for (const name of await childCgroups('aiva')) {
      if (keep.has(name)) continue;
      this.log.warn({ cgroup: name }, 'removing an orphaned cgroup');
      await (await Cgroup.at(`aiva/${name}`)).destroy().catch(() => {});
    }
    for (const runtime of this.options.runtimes.values()) await runtime.sweep(keep);
    // Namespaces, links and firewall entries: SandboxNetworking.start, next.
  }
}
