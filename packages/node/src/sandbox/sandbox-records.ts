import { EventEmitter } from 'node:events';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SandboxRef } from '../runtime/types.js';
import { readSandboxRecord, type SandboxRecord, writeRecord } from './sandbox-record.js';
import { nextState, type SandboxTransition } from './sandbox-state.js';

/** A sandbox as the node shows it. */
export type SandboxInfo = Readonly<SandboxRecord>;

export interface SandboxEvents {
  state: [SandboxInfo];
}

export class SandboxNotFoundError extends Error {
  override name = 'SandboxNotFoundError';
  constructor(readonly id: string) {
    super(`sandbox ${id} does not exist`);
  }
}

/**
 * The node's sandbox records: in memory, on disk (`sandboxes/<id>/sandbox.json`, saved
 * on every change), and as events. Every state change goes through `transition`, which
 * checks it against the state table, saves the record and emits `state`. Operations on
 * one sandbox run one at a time (`serialize`).
 */
export class SandboxRecords extends EventEmitter<SandboxEvents> {
  private readonly records = new Map<string, SandboxRecord>();
  private readonly queues = new Map<string, Promise<unknown>>();

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    /** The cgroup under which the node's sandboxes live (HostScope.cgroupParent). */
    private readonly cgroupParent = 'aiva',
  ) {
    super();
  }

  dirOf(id: string): string {
    return join(this.dir, id);
  }

  ref(r: SandboxRecord): SandboxRef {
    return { id: r.id, dir: this.dirOf(r.id), cgroupParent: this.cgroupParent };
  }

  has(id: string): boolean {
    return this.records.has(id);
  }

  all(): SandboxRecord[] {
    return [...this.records.values()];
  }

  ids(): string[] {
    return [...this.records.keys()];
  }

  mustGet(id: string): SandboxRecord {
    const r = this.records.get(id);
    if (!r) throw new SandboxNotFoundError(id);
    return r;
  }

  add(r: SandboxRecord): void {
    this.records.set(r.id, r);
  }

  delete(id: string): void {
    this.records.delete(id);
  }

  clear(): void {
    this.records.clear();
  }

  async save(r: SandboxRecord): Promise<void> {
    await writeRecord(join(this.dirOf(r.id), 'sandbox.json'), r);
  }

  /** Moves the sandbox on by `op` (or throws SandboxStateError), saves it and tells the listeners. */
  async transition(r: SandboxRecord, op: SandboxTransition, error?: string): Promise<void> {
    r.state = nextState(r.id, r.state, op);
    if (error !== undefined) r.error = error;
    if (r.state !== 'stopped') await this.save(r);
    this.log.info({ sandbox: r.id, state: r.state, error }, `sandbox ${r.state}`);
    this.emit('state', { ...r });
  }

  /** Runs `op` after every operation already queued for `id`. */
  serialize<T>(id: string, op: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(id) ?? Promise.resolve();
    const next = prev.then(op, op);
    const settled = next.catch(() => {});
    this.queues.set(id, settled);
    void settled.then(() => {
      if (this.queues.get(id) === settled) this.queues.delete(id);
    });
    return next;
  }

  /** Resolves once every queued operation has settled. */
  async idle(): Promise<void> {
    await Promise.allSettled([...this.queues.values()]);
  }

  /**
   * The records on disk, by directory: a record, or undefined for a directory without a
   * readable one (a create that crashed before its first save, or a damaged file).
   */
  async load(): Promise<{ id: string; record: SandboxRecord | undefined }[]> {
    const out: { id: string; record: SandboxRecord | undefined }[] = [];
    for (const id of await readdir(this.dir)) {
      const record = await readSandboxRecord(join(this.dirOf(id), 'sandbox.json')).catch((e: Error) => {
        this.log.warn({ sandbox: id, err: e }, 'unreadable sandbox record');
        return undefined;
      });
      out.push({ id, record });
    }
    return out;
  }
}

/**
 * Hashes of the templates and kernels that sandboxes recorded under `dir` use, read from
 * their records (no lock needed).
 */
export async function imagesOfRecords(dir: string): Promise<Set<string>> {
  const used = new Set<string>();
  for (const id of await readdir(dir).catch(() => [] as string[])) {
    const r = await readSandboxRecord(join(dir, id, 'sandbox.json')).catch(() => undefined);
    if (!r) continue;
    used.add(r.template.hash);
    if (r.kernel) used.add(r.kernel);
  }
  return used;
}
