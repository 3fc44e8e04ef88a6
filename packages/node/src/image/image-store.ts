import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lockFile } from '../host/file-lock.js';
import { type ImagePaths, imagePaths } from '../paths.js';
import { ImageBuildError, runStep, silentReporter } from './build-reporter.js';
import { buildDebianRootfs } from './debian-rootfs.js';
import { diskUsage, fileUsage } from './disk-usage.js';
import { addTreeToExt4, makeExt4 } from './ext4.js';
import { buildGuestKernel } from './guest-kernel.js';
import {
  type BuildOptions,
  GUEST_DIR,
  type GuestKernel,
  type ImageStoreOptions,
  type LayerRecord,
  type ResolvedKernel,
  type ResolvedTemplate,
  type StoredArtefact,
  type TemplateImage,
} from './image-types.js';
import { contentHash, loadKernelRecipe, loadRecipe, type Recipe } from './recipe.js';

/**
 * Bump when a change to the builder changes what it produces from the same recipe, so
 * that caches built by older code are not reused.
 */
const BUILDER_VERSION = 1;

interface TemplatePlan {
  recipe: Recipe;
  recipeHash: string;
  debianHash: string;
  guestHash: string;
  hash: string;
}

const readJson = async <T>(file: string): Promise<T | undefined> => {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as T;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
};

/**
 * The content-addressed store of templates, their layers and the guest kernel, under
 * `<data dir>/images`. Every artefact is built in `tmp/` and renamed into place only when
 * complete, under a lock on its hash, so a failed or concurrent build never leaves a
 * partial artefact where a reader could find it.
 */
export class ImageStore {
  readonly paths: ImagePaths;

  constructor(readonly options: ImageStoreOptions) {
    this.paths = imagePaths(options.home);
  }

  /** The files of the guest layer (name → source path) and their hash. */
  private async guestLayerSource(): Promise<{ files: Map<string, string>; hash: string }> {
    const { envdDir, recipesDir } = this.options;
    const files = new Map<string, string>();
    const parts: Record<string, string> = {};
    try {
      for (const name of (await readdir(envdDir)).sort()) files.set(name, join(envdDir, name));
      if (!files.has('envd.js')) throw new Error(`${envdDir} holds no envd.js (has envd been built?)`);
      files.set('init', join(recipesDir, 'guest', 'init'));
      for (const [name, src] of files) {
        const st = await stat(src);
        if (!st.isFile()) throw new Error(`${src} is not a file`);
        parts[name] = contentHash({ data: await readFile(src, 'base64'), exec: (st.mode & 0o111) !== 0 });
      }
    } catch (e) {
      throw new ImageBuildError('guest layer', (e as Error).message);
    }
    return { files, hash: contentHash({ v: BUILDER_VERSION, role: 'guest', parts }) };
  }

  /** The templates that have a recipe (what `ensureTemplate` accepts). */
  async templateNames(): Promise<string[]> {
    const names: string[] = [];
    for (const e of await readdir(this.options.recipesDir, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name === 'kernel' || e.name === 'guest') continue;
      const ok = await stat(join(this.options.recipesDir, e.name, 'recipe.json')).then(
        () => true,
        () => false,
      );
      if (ok) names.push(e.name);
    }
    return names.sort();
  }

  /** Works out what `name` would be built from now, without building anything. */
  async plan(name: string): Promise<TemplatePlan> {
    const recipe = await loadRecipe(this.options.recipesDir, name);
    const { debian, packages, user, run } = recipe;
    const debianHash = contentHash({ v: BUILDER_VERSION, role: 'debian', debian, packages, user, run });
    const guestHash = (await this.guestLayerSource()).hash;
    return {
      recipe,
      recipeHash: contentHash(recipe),
      debianHash,
      guestHash,
      hash: contentHash({ v: BUILDER_VERSION, layers: [guestHash, debianHash], disk: recipe.disk }),
    };
  }

  private resolveTemplate(image: TemplateImage): ResolvedTemplate {
    return {
      ...image,
      disk: join(this.paths.images, image.hash, 'rootfs.ext4'),
      rootfsLayers: image.layers.map((h) => join(this.paths.layers, h, 'rootfs')),
    };
  }

  /** The template `name`, built first if the store lacks it. */
  async ensureTemplate(name: string, options: BuildOptions = {}): Promise<ResolvedTemplate> {
    const plan = await this.plan(name);
    const recordFile = join(this.paths.images, plan.hash, 'image.json');
    const cached = await readJson<TemplateImage>(recordFile);
    const reporter = options.reporter ?? silentReporter;
    if (cached) {
      reporter.step('template', `template ${name} ${plan.hash.slice(0, 12)}`, 'cached');
      return this.resolveTemplate(cached);
    }
    return this.building(
      `template-${plan.hash}`,
      recordFile,
      options,
      (r: TemplateImage) => this.resolveTemplate(r),
      async (tmp) => {
        const started = performance.now();
        await this.ensureDebianLayer(plan, options);
        await this.ensureGuestLayer(plan, options);
        const disk = join(tmp, 'rootfs.ext4');
        await runStep(
          reporter,
          'ext4',
          `ext4 disk image (${plan.recipe.disk.sizeMiB} MiB, sparse)`,
          async () => {
            await makeExt4(
              disk,
              plan.recipe.disk.sizeMiB,
              this.layerRootfs(plan.debianHash),
              'aiva-root',
              options.signal,
            );
            await addTreeToExt4(disk, this.layerRootfs(plan.guestHash), tmp, options.signal);
            await chmod(disk, 0o444);
          },
        );
        const image: TemplateImage = {
          kind: 'template',
          name,
          hash: plan.hash,
          recipeHash: plan.recipeHash,
          layers: [plan.guestHash, plan.debianHash],
          diskSizeMiB: plan.recipe.disk.sizeMiB,
          defaults: plan.recipe.defaults,
          createdAt: new Date().toISOString(),
          buildSeconds: Math.round((performance.now() - started) / 100) / 10,
        };
        await writeFile(join(tmp, 'image.json'), `${JSON.stringify(image, null, 2)}\n`);
        await this.publish(tmp, join(this.paths.images, plan.hash));
        return this.resolveTemplate(image);
      },
    );
  }

  private layerRootfs(hash: string): string {
    return join(this.paths.layers, hash, 'rootfs');
  }

  private async ensureDebianLayer(plan: TemplatePlan, options: BuildOptions): Promise<void> {
    const reporter = options.reporter ?? silentReporter;
    const title = `Debian ${plan.recipe.debian.suite} with ${plan.recipe.packages.length} packages`;
    await this.ensureLayer(
      plan.debianHash,
      'debian',
      plan.recipe.name,
      title,
      options,
      async (rootfs, tmp) => {
        const work = join(tmp, 'work');
        await mkdir(work);
        await buildDebianRootfs(plan.recipe, rootfs, work, reporter, 'debian', options.signal);
        await rm(work, { recursive: true });
      },
    );
  }

  private async ensureGuestLayer(plan: TemplatePlan, options: BuildOptions): Promise<void> {
    const { files } = await this.guestLayerSource();
    await this.ensureLayer(
      plan.guestHash,
      'guest',
      plan.recipe.name,
      'guest layer (envd, init)',
      options,
      async (rootfs) => {
        // Only the leaf directory is the layer's own; its parents exist in every rootfs.
        const dir = join(rootfs, GUEST_DIR);
        await mkdir(dir, { recursive: true, mode: 0o755 });
        for (const [name, src] of files) {
          await copyFile(src, join(dir, name));
          // Executables (init, envd's native helper) stay executable; the hash covers it.
          const exec = name === 'init' || ((await stat(src)).mode & 0o111) !== 0;
          await chmod(join(dir, name), exec ? 0o755 : 0o644);
        }
      },
    );
  }

  private async ensureLayer(
    hash: string,
    role: LayerRecord['role'],
    template: string,
    title: string,
    options: BuildOptions,
    fill: (rootfs: string, tmp: string) => Promise<void>,
  ): Promise<void> {
    const reporter = options.reporter ?? silentReporter;
    const recordFile = join(this.paths.layers, hash, 'layer.json');
    if (await readJson(recordFile)) {
      reporter.step(role, `${title} ${hash.slice(0, 12)}`, 'cached');
      return;
    }
    await this.building(
      `layer-${hash}`,
      recordFile,
      options,
      () => undefined,
      async (tmp) => {
        await runStep(reporter, role, `${title} ${hash.slice(0, 12)}`, async () => {
          await fill(join(tmp, 'rootfs'), tmp);
        });
        const record: LayerRecord = {
          kind: 'layer',
          hash,
          role,
          template,
          createdAt: new Date().toISOString(),
        };
        await writeFile(join(tmp, 'layer.json'), `${JSON.stringify(record, null, 2)}\n`);
        await this.publish(tmp, join(this.paths.layers, hash));
      },
    );
  }

  /** A template already in the store, by its hash (what a running sandbox was made from). */
  async templateByHash(hash: string): Promise<ResolvedTemplate | undefined> {
    const record = await readJson<TemplateImage>(join(this.paths.images, hash, 'image.json'));
    return record && this.resolveTemplate(record);
  }

  /** A guest kernel already in the store, by its hash. */
  async kernelByHash(hash: string): Promise<ResolvedKernel | undefined> {
    const record = await readJson<GuestKernel>(join(this.paths.kernels, hash, 'kernel.json'));
    return record && this.resolveKernel(record);
  }

  private resolveKernel(k: GuestKernel): ResolvedKernel {
    const dir = join(this.paths.kernels, k.hash);
    return {
      ...k,
      kernel: join(dir, 'vmlinuz'),
      vmlinux: join(dir, 'vmlinux'),
      initrd: join(dir, 'initrd.img'),
    };
  }

  /** The guest kernel and initramfs, built first if the store lacks them. */
  async ensureKernel(options: BuildOptions = {}): Promise<ResolvedKernel> {
    const reporter = options.reporter ?? silentReporter;
    const recipe = await loadKernelRecipe(this.options.recipesDir);
    const initScript = await readFile(join(this.options.recipesDir, 'kernel', 'init'), 'utf8');
    const recipeHash = contentHash(recipe);
    const hash = contentHash({ v: BUILDER_VERSION, recipe, initScript });
    const dir = join(this.paths.kernels, hash);
    const resolve = (k: GuestKernel) => this.resolveKernel(k);
    const recordFile = join(dir, 'kernel.json');
    const cached = await readJson<GuestKernel>(recordFile);
    if (cached) {
      reporter.step('kernel', `guest kernel ${cached.release} ${hash.slice(0, 12)}`, 'cached');
      return resolve(cached);
    }
    return this.building(`kernel-${hash}`, recordFile, options, resolve, async (tmp) => {
      const started = performance.now();
      const info = await runStep(
        reporter,
        'kernel',
        `guest kernel (${recipe.package}) and initramfs`,
        async () => {
          const work = join(tmp, 'work');
          await mkdir(work);
          const built = await buildGuestKernel(
            recipe,
            initScript,
            tmp,
            work,
            reporter,
            'kernel',
            options.signal,
          );
          await rm(work, { recursive: true });
          return built;
        },
      );
      const record: GuestKernel = {
        kind: 'kernel',
        name: 'kernel',
        hash,
        recipeHash,
        ...info,
        createdAt: new Date().toISOString(),
        buildSeconds: Math.round((performance.now() - started) / 100) / 10,
      };
      await writeFile(join(tmp, 'kernel.json'), `${JSON.stringify(record, null, 2)}\n`);
      await this.publish(tmp, dir);
      return resolve(record);
    });
  }

  /**
   * Runs `build` in a fresh directory under tmp/ while holding the lock for `key`. If
   * another process finished the same artefact while we waited for the lock, its record
   * is returned instead. The directory is removed whether `build` succeeds (after it has
   * been published) or fails.
   */
  private async building<R, T>(
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
  private async publish(tmp: string, dest: string): Promise<void> {
    // A directory without a record is debris of an older failed publish.
    await rm(dest, { recursive: true, force: true });
    await rename(tmp, dest);
  }

  /** Everything in the store, with sizes; `current` marks what new sandboxes would use. */
  async list(): Promise<StoredArtefact[]> {
    const out: StoredArtefact[] = [];
    const templates = await this.records<TemplateImage>(this.paths.images, 'image.json');
    const currentHashes = new Set<string>();
    for (const t of new Set(templates.map((x) => x.name))) {
      const plan = await this.plan(t).catch(() => undefined);
      if (plan) currentHashes.add(plan.hash);
    }
    for (const t of templates) {
      const u = await fileUsage(join(this.paths.images, t.hash, 'rootfs.ext4'));
      out.push({
        kind: 'template',
        name: t.name,
        hash: t.hash,
        recipeHash: t.recipeHash,
        createdAt: t.createdAt,
        ...u,
        current: currentHashes.has(t.hash),
      });
    }
    const kernelRecipe = await loadKernelRecipe(this.options.recipesDir).catch(() => undefined);
    for (const k of await this.records<GuestKernel>(this.paths.kernels, 'kernel.json')) {
      const u = await diskUsage(join(this.paths.kernels, k.hash));
      out.push({
        kind: 'kernel',
        name: `kernel ${k.release}`,
        hash: k.hash,
        recipeHash: k.recipeHash,
        createdAt: k.createdAt,
        ...u,
        current: kernelRecipe !== undefined && contentHash(kernelRecipe) === k.recipeHash,
      });
    }
    for (const l of await this.records<LayerRecord>(this.paths.layers, 'layer.json')) {
      const u = await diskUsage(join(this.paths.layers, l.hash, 'rootfs'));
      const usedBy = templates.filter((t) => t.layers.includes(l.hash)).map((t) => t.hash.slice(0, 12));
      out.push({
        kind: 'layer',
        name: `${l.template}/${l.role}`,
        hash: l.hash,
        createdAt: l.createdAt,
        ...u,
        current: false,
        usedBy,
      });
    }
    return out;
  }

  private async records<T>(dir: string, file: string): Promise<T[]> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: T[] = [];
    for (const n of names) {
      const r = await readJson<T>(join(dir, n, file));
      if (r) out.push(r);
    }
    return out;
  }

  /**
   * Removes the templates or kernels that `ref` names (a name such as `base` or
   * `kernel`, or a hash prefix of at least 6 characters), then the layers no remaining
   * template uses. Returns what was removed.
   */
  async remove(ref: string, options: { inUse?: Set<string> } = {}): Promise<StoredArtefact[]> {
    const all = await this.list();
    const byHash = ref.length >= 6 && /^[0-9a-f]+$/.test(ref);
    const matches = all.filter(
      (a) =>
        a.kind !== 'layer' &&
        (byHash ? a.hash.startsWith(ref) : a.name === ref || (ref === 'kernel' && a.kind === 'kernel')),
    );
    if (matches.length === 0) throw new Error(`no cached image matches "${ref}"`);
    const busy = matches.filter((m) => options.inUse?.has(m.hash));
    if (busy.length > 0) {
      throw new Error(
        `${busy.map((b) => `${b.name} ${b.hash.slice(0, 12)}`).join(', ')} in use by sandboxes or checkpoints: kill or remove them first`,
      );
    }
    for (const m of matches) {
      const dir = m.kind === 'kernel' ? this.paths.kernels : this.paths.images;
      await this.removeLocked(`${m.kind}-${m.hash}`, join(dir, m.hash));
    }
    const remaining = await this.records<TemplateImage>(this.paths.images, 'image.json');
    const inUse = new Set(remaining.flatMap((t) => t.layers));
    const orphans = all.filter((a) => a.kind === 'layer' && !inUse.has(a.hash));
    for (const l of orphans) await this.removeLocked(`layer-${l.hash}`, join(this.paths.layers, l.hash));
    return [...matches, ...orphans];
  }

  private async removeLocked(key: string, dir: string): Promise<void> {
    await mkdir(this.paths.locks, { recursive: true });
    const lock = await lockFile(join(this.paths.locks, `${key}.lock`));
    try {
      // Rename first so that no reader sees a half-removed artefact.
      const doomed = join(this.paths.tmp, `${key}.removing-${randomBytes(4).toString('hex')}`);
      await mkdir(this.paths.tmp, { recursive: true });
      await rename(dir, doomed);
      await rm(doomed, { recursive: true, force: true });
    } finally {
      await lock.release();
    }
  }
}
