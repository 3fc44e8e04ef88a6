import { mkdir, mkdtemp, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { runCommand } from '../host/command.js';
import { SandboxSpecError } from '../runtime/types.js';
import {
  CHECKPOINT_RECORD_VERSION,
  type CheckpointRecord,
  readCheckpointRecord,
  writeRecord,
} from './sandbox-record.js';

const NAME_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;
const RECORD = 'checkpoint.json';

/** Bytes a directory's files take on disk (sparse files count what is allocated). */
async function diskUsage(dir: string): Promise<number> {
  const { stdout } = await runCommand('du', ['-s', '--block-size=1', dir]);
  return Number(stdout.split(/\s/)[0]);
}

/**
 * Saved sandboxes, one directory each under `<data dir>/checkpoints/`: what the driver
 * saved plus `checkpoint.json`, written last. A checkpoint is written in `tmp/` and
 * renamed into place, so one that failed or was interrupted leaves nothing but `tmp/`,
 * which `open` clears.
 */
export class CheckpointStore {
  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {}

  /** Clears checkpoints that were being written when the node stopped. */
  async open(): Promise<void> {
    await rm(join(this.dir, 'tmp'), { recursive: true, force: true });
  }

  static checkName(name: string): void {
    if (!NAME_PATTERN.test(name))
      throw new SandboxSpecError(`checkpoint name "${name}" is not lower-case letters, digits, - and _`);
  }

  path(name: string): string {
    return join(this.dir, name);
  }

  /** The checkpoint `name`, or undefined; a damaged record is logged and counts as none. */
  async find(name: string): Promise<CheckpointRecord | undefined> {
    if (!NAME_PATTERN.test(name)) return undefined;
    return readCheckpointRecord(join(this.path(name), RECORD)).catch((e: Error) => {
      this.log.warn({ checkpoint: name, err: e }, 'ignoring a damaged checkpoint');
      return undefined;
    });
  }

  /** The checkpoint `name`; SandboxSpecError if there is none. */
  async get(name: string): Promise<CheckpointRecord> {
    const record = await this.find(name);
    if (!record) throw new SandboxSpecError(`there is no checkpoint ${name}`);
    return record;
  }

  async list(): Promise<CheckpointRecord[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const records = await Promise.all(names.map((n) => this.find(n)));
    return records.filter((c): c is CheckpointRecord => c !== undefined);
  }

  /**
   * Saves a checkpoint: `save` fills an empty work directory and returns the record's
   * fields; the record is written and the directory renamed into place. Nothing is left
   * of one that fails.
   */
  async write(
    name: string,
    save: (workDir: string) => Promise<Omit<CheckpointRecord, 'version' | 'name' | 'bytes' | 'createdAt'>>,
  ): Promise<CheckpointRecord> {
    CheckpointStore.checkName(name);
    const dest = this.path(name);
    if (
      await stat(dest).then(
        () => true,
        () => false,
      )
    )
      throw new SandboxSpecError(`checkpoint ${name} already exists`);
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    const work = await mkdtemp(join(this.dir, 'tmp', `${name}.`));
    try {
      const fields = await save(work);
      const record: CheckpointRecord = {
        version: CHECKPOINT_RECORD_VERSION,
        name,
        ...fields,
        bytes: await diskUsage(work),
        createdAt: new Date().toISOString(),
      };
      await writeRecord(join(work, RECORD), record);
      await rename(work, dest);
      return record;
    } catch (e) {
      await rm(work, { recursive: true, force: true });
      throw e;
    }
  }

  /**
   * Puts in place a checkpoint another node made: `fill` writes its files (its record
   * among them) into an empty work directory, and the record must name `name`. False,
   * and nothing kept, if the store has it already; nothing is left of one that fails.
   */
  async adopt(name: string, fill: (workDir: string) => Promise<void>): Promise<boolean> {
    CheckpointStore.checkName(name);
    if (await this.find(name)) return false;
    await mkdir(join(this.dir, 'tmp'), { recursive: true });
    const work = await mkdtemp(join(this.dir, 'tmp', `${name}.`));
    try {
      await fill(work);
      const record = await readCheckpointRecord(join(work, RECORD));
      if (record?.name !== name)
        throw new SandboxSpecError(`the archive of checkpoint ${name} is not that checkpoint`);
      try {
        await rename(work, this.path(name));
      } catch (e) {
        // The same checkpoint, put in place meanwhile.
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'ENOTEMPTY' || code === 'EEXIST') return false;
        throw e;
      }
      return true;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Removes a checkpoint; false if there is none. Sandboxes made from it keep running:
   * each has its own copy of what it needed.
   */
  async remove(name: string): Promise<boolean> {
    if (!NAME_PATTERN.test(name)) return false;
    const dir = this.path(name);
    if (
      !(await stat(join(dir, RECORD)).then(
        () => true,
        () => false,
      ))
    )
      return false;
    await rm(dir, { recursive: true, force: true });
    return true;
  }
}
