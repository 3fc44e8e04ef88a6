import { randomBytes } from 'node:crypto';
import { access, mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LockBusyError, lockFile } from '../host/file-lock.js';
import type { ImagePaths } from '../paths.js';
import { runStep, silentReporter } from './build-reporter.js';
import type { BuildOptions, LayerRecord } from './image-types.js';

export const readJson = async <T>(file: string): Promise<T | undefined> => {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
};

export const writeJson = (file: string, value: unknown) =>
  writeFile(file, `${JSON.stringify(value, null, 2)}\n`);

/** What a layer's maker says about it besides its hash (its record gets `kind`, `hash` and `createdAt`). */
export type LayerDescription = Omit<LayerRecord, 'kind' | 'hash' | 'createdAt'>;

/**
 * How every artefact of the image store (layer, template image, kernel) comes to be:
 * built in a fresh directory under `tmp/` while holding the lock of its key, then
 * renamed into place, where its record file marks it complete. A failed or concurrent
 * build never leaves a partial artefact where a reader could find it.
 */
export class Artefacts {
  constructor(readonly paths: ImagePaths) {}

  layerDir(hash: string): string {
    return join(this.paths.layers, hash);
  }

  layerRootfs(hash: string): string {
    return join(this.paths.layers, hash, 'rootfs');
  }

  layer(hash: string): Promise<LayerRecord | undefined> {
    return readJson<LayerRecord>(join(this.layerDir(hash), 'layer.json'));
  }

  /** Those of `layers` the store lacks. */
  async absentLayers(layers: string[]): Promise<string[]> {
    const present = new Set(await this.present(layers));
    return layers.filter((l) => !present.has(l));
  }

  /** The hashes of the complete layers in the store. */
  async layerHashes(): Promise<string[]> {
    const names = await readdir(this.paths.layers).catch(() => [] as string[]);
    return this.present(names);
  }

  private async present(names: string[]): Promise<string[]> {
    const out: string[] = [];
    for (const n of names)
      if (
        await access(join(this.layerDir(n), 'layer.json')).then(
          () => true,
          () => false,
        )
      )
        out.push(n);
    return out;
  }

  /**
   * The layer `hash`, filled by `fill(rootfs, tmp)` if the store lacks it. `fill` makes
   * `rootfs` (it does not exist yet) and may use `tmp` for scratch.
   */
  async ensureLayer(
    hash: string,
    description: LayerDescription,
    title: string,
    options: BuildOptions,
    fill: (rootfs: string, tmp: string) => Promise<void>,
  ): Promise<LayerRecord> {
    const reporter = options.reporter ?? silentReporter;
    const recordFile = join(this.layerDir(hash), 'layer.json');
    const cached = await readJson<LayerRecord>(recordFile);
    if (cached) {
      reporter.step(description.role, `${title} ${hash.slice(0, 12)}`, 'cached');
      return cached;
    }
    return this.building(
      `layer-${hash}`,
      recordFile,
      options,
      (r: LayerRecord) => r,
      async (tmp) => {
        await runStep(reporter, description.role, `${title} ${hash.slice(0, 12)}`, async () => {
          await fill(join(tmp, 'rootfs'), tmp);
        });
        const record: LayerRecord = {
          kind: 'layer',
          hash,
          ...description,
          createdAt: new Date().toISOString(),
        };
        await writeJson(join(tmp, 'layer.json'), record);
        await this.publish(tmp, this.layerDir(hash));
        return record;
      },
    );
  }

  /**
   * Runs `build` in a fresh directory under tmp/ while holding the lock for `key`. If
   * another process finished the same artefact while we waited for the lock, its record
   * is returned instead. The directory is removed whether `build` succeeds (after it has
   * been published) or fails.
   */
  async building<R, T>(
    key: string,
    recordFile: string,
    options: BuildOptions,
    fromRecord: (record: R) => T,
    build: (tmp: string) => Promise<T>,
  ): Promise<T> {
    await Promise.all(
      [this.paths.locks, this.paths.tmp, this.paths.layers, this.paths.images, this.paths.kernels].map((d) =>
        mkdir(d, { recursive: true }),
      ),
    );
    const lock = await lockFile(join(this.paths.locks, `${key}.lock`), {
      signal: options.signal,
      onWait: () => options.reporter?.output(key, `waiting for another build of ${key}`),
    });
    try {
      const done = await readJson<R>(recordFile);
      if (done) return fromRecord(done);
      // Leftovers of a builder that died while holding this lock: nobody else owns them.
      for (const old of await readdir(this.paths.tmp)) {
        if (old.startsWith(`${key}.`)) await rm(join(this.paths.tmp, old), { recursive: true, force: true });
      }
      const tmp = join(this.paths.tmp, `${key}.${randomBytes(4).toString('hex')}`);
      await mkdir(tmp);
      try {
        return await build(tmp);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    } finally {
      await lock.release();
    }
  }

  /** Moves a finished artefact into place; its record file is what marks it complete. */
  async publish(tmp: string, dest: string): Promise<void> {
    // A directory without a record is debris of an older failed publish.
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
  }

  /** The records `file` of every artefact directory under `dir`. */
  async records<T>(dir: string, file: string): Promise<T[]> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: T[] = [];
    for (const n of names) {
      const r = await readJson<T>(join(dir, n, file));
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Removes what builders that died left in `tmp/` (a node killed mid-build): every entry
   * whose key's lock nobody holds. Entries are named `<key>.<anything>`.
   */
  async sweepTmp(): Promise<string[]> {
    const removed: string[] = [];
    for (const name of await readdir(this.paths.tmp).catch(() => [] as string[])) {
      const key = name.split('.')[0] as string;
      let lock: Awaited<ReturnType<typeof lockFile>>;
      try {
        lock = await lockFile(join(this.paths.locks, `${key}.lock`), { noWait: true });
      } catch (e) {
        if (e instanceof LockBusyError) continue;
        throw e;
      }
      try {
        await rm(join(this.paths.tmp, name), { recursive: true, force: true });
        removed.push(name);
      } finally {
        await lock.release();
      }
    }
    return removed;
  }

  /** Removes an artefact directory under the lock of `key`; no reader sees it half-removed. */
  async removeLocked(key: string, dir: string): Promise<void> {
    await mkdir(this.paths.locks, { recursive: true });
    const lock = await lockFile(join(this.paths.locks, `${key}.lock`));
    try {
      const doomed = join(this.paths.tmp, `${key}.removing-${randomBytes(4).toString('hex')}`);
      await mkdir(this.paths.tmp, { recursive: true });
      await rename(dir, doomed).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
      await rm(doomed, { recursive: true, force: true });
    } finally {
      await lock.release();
    }
  }
}
