import { createHash } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { lockFile } from '../host/file-lock.js';
import { type ImagePaths, imagePaths } from '../paths.js';
import { Artefacts, readJson, writeJson } from './artefacts.js';
import { runStep, silentReporter } from './build-reporter.js';
import { buildDebianRootfs } from './debian-rootfs.js';
import { diskUsage, fileUsage } from './disk-usage.js';
import { makeExt4FromLayers } from './ext4.js';
import { buildGuestKernel } from './guest-kernel.js';
import { GuestLayer, type GuestLayerSource, hostGuestTools } from './guest-layer.js';
import type {
  BuildOptions,
  GuestKernel,
  ImageStoreOptions,
  LayerRecord,
  ResolvedKernel,
  ResolvedTemplate,
  StoredArtefact,
  TemplateDefinition,
  TemplateImage,
} from './image-types.js';
import { OciImages } from './oci-images.js';
import { contentHash, loadKernelRecipe, loadRecipe, type Recipe, recipeAliases } from './recipe.js';

/**
 * Bump when a change to the builder changes what it produces from the same recipe, so
 * that caches built by older code are not reused.
 */
const BUILDER_VERSION = 2;

/** What a command needs is not on this node: layers a template needs (removed, or built elsewhere), or a checkpoint. */
export class MissingArtefactError extends Error {
  override name = 'MissingArtefactError';
  /**
   * `layers`: what it lacks, by hash; `buildable`: this node could build them (a recipe's);
   * `checkpoints`: checkpoints it lacks, by name.
   */
  constructor(
    message: string,
    readonly layers: string[] = [],
    readonly buildable = false,
    readonly checkpoints: string[] = [],
  ) {
    super(message);
  }
}

interface RecipePlan {
  recipe: Recipe;
  recipeHash: string;
  debianHash: string;
}

/** The template with the identity of its disk as made now (`diskId`), if it has one. */
async function withDiskId(template: ResolvedTemplate): Promise<ResolvedTemplate> {
  const st = await stat(template.disk).catch(() => undefined);
  return st ? { ...template, diskId: `${st.ino}-${Math.round(st.mtimeMs)}` } : template;
}

/** The hash of the image a definition makes with the guest layer `guestHash` on top. */
function imageHash(guestHash: string, d: TemplateDefinition): string {
  return contentHash({
    v: BUILDER_VERSION,
    // The name too: a build sandbox's image (discarded after its step) must never be the
    // image of a template whose layers and defaults it happens to share.
    name: d.name,
    layers: [guestHash, ...d.layers],
    disk: d.diskSizeMiB,
    defaults: d.defaults,
    env: d.env ?? {},
    start: d.start ?? null,
  });
}

/**
 * The content-addressed store of templates, their layers and the guest kernel, under
 * `<data dir>/images`. A template image is a definition (content layers, defaults, start
 * command) with the guest layer on top; recipe templates get their content layer from
 * Debian, built templates from their build's steps. Every artefact is made through
 * `Artefacts` (in tmp/, under a lock, renamed into place).
 */
export class ImageStore {
  readonly paths: ImagePaths;
  readonly artefacts: Artefacts;
  /** Registry images and image archives, unpacked into this store's layers. */
  readonly oci: OciImages;
  private readonly guest: GuestLayer;

  constructor(readonly options: ImageStoreOptions) {
    this.paths = imagePaths(options.home);
    this.artefacts = new Artefacts(this.paths);
    this.oci = new OciImages(this.artefacts);
    this.guest = new GuestLayer(this.artefacts, {
      envdDir: options.envdDir,
      codeInterpreterDir: options.codeInterpreterDir,
      mcpGatewayDir: options.mcpGatewayDir,
      initScript: join(options.recipesDir, 'guest', 'init'),
      tools: { ...hostGuestTools(), ...options.guestTools },
    });
  }

  /** What the guest layer holds now, and its hash (see GuestLayer). */
  private guestLayerSource(): Promise<GuestLayerSource> {
    return this.guest.source();
  }

  /** The templates that have a recipe (what `ensureTemplate` accepts by name). */
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
    for (const alias of (await recipeAliases(this.options.recipesDir)).keys())
      if (!names.includes(alias)) names.push(alias);
    return names.sort();
  }

  /** Works out what the recipe `name` would be built from now, without building anything. */
  private async plan(name: string): Promise<RecipePlan> {
    const recipe = await loadRecipe(this.options.recipesDir, name);
    const { debian, packages, user, run } = recipe;
    const files: Record<string, string> = {};
    for (const [dest, src] of Object.entries(recipe.files ?? {}))
      files[dest] = createHash('sha256')
        .update(await readFile(join(this.options.recipesDir, src)))
        .digest('hex');
    // Without files, the hash of a recipe that has none stays what it was before they existed.
    const debianHash = contentHash({
      v: 1,
      role: 'debian',
      debian,
      packages,
      user,
      run,
      ...(recipe.files ? { files } : {}),
    });
    return { recipe, recipeHash: contentHash(recipe), debianHash };
  }

  private recipeDefinition(plan: RecipePlan): TemplateDefinition {
    return {
      name: plan.recipe.name,
      layers: [plan.debianHash],
      diskSizeMiB: plan.recipe.disk.sizeMiB,
      defaults: plan.recipe.defaults,
      ...(plan.recipe.start ? { start: { ...plan.recipe.start } } : {}),
      recipeHash: plan.recipeHash,
    };
  }

  /** The definition of the recipe template `name`, its Debian layer built first if the store lacks it. */
  async recipeTemplate(name: string, options: BuildOptions = {}): Promise<TemplateDefinition> {
    const plan = await this.plan(name);
    await this.ensureDebianLayer(plan, options);
    return this.recipeDefinition(plan);
  }

  private resolveTemplate(image: TemplateImage): ResolvedTemplate {
    return {
      ...image,
      disk: join(this.paths.images, image.hash, 'rootfs.ext4'),
      rootfsLayers: image.layers.map((h) => this.artefacts.layerRootfs(h)),
    };
  }

  /**
   * The template image of a recipe (by name) or of a definition, composed with the
   * current guest layer; a recipe's Debian layer is built first if the store lacks it.
   * A definition whose layers are not all here is a MissingArtefactError.
   */
  async ensureTemplate(
    template: string | TemplateDefinition,
    options: BuildOptions = {},
  ): Promise<ResolvedTemplate> {
    const reporter = options.reporter ?? silentReporter;
    const plan = typeof template === 'string' ? await this.plan(template) : undefined;
    const definition = plan ? this.recipeDefinition(plan) : (template as TemplateDefinition);
    const guest = await this.guestLayerSource();
    const hash = imageHash(guest.hash, definition);
    const recordFile = join(this.paths.images, hash, 'image.json');
    const cached = await readJson<TemplateImage>(recordFile);
    if (cached) {
      reporter.step('template', `template ${definition.name} ${hash.slice(0, 12)}`, 'cached');
      return this.resolveTemplate(cached);
    }
    if (plan) await this.ensureDebianLayer(plan, options);
    const missing = await this.artefacts.absentLayers(definition.layers);
    if (missing.length > 0)
      throw new MissingArtefactError(
        `template ${definition.name} needs layer${missing.length > 1 ? 's' : ''} ${missing.map((h) => h.slice(0, 12)).join(', ')}, which this node's image store does not hold`,
        missing,
      );
    await this.ensureGuestLayer(definition.name, options);
    return this.artefacts.building(
      `template-${hash}`,
      recordFile,
      options,
      (r: TemplateImage) => this.resolveTemplate(r),
      async (tmp) => {
        const image: TemplateImage = {
          ...definition,
          kind: 'template',
          hash,
          layers: [guest.hash, ...definition.layers],
          createdAt: new Date().toISOString(),
        };
        await writeJson(join(tmp, 'image.json'), image);
        await this.artefacts.publish(tmp, join(this.paths.images, hash));
        return this.resolveTemplate(image);
      },
    );
  }

  /**
   * The content layers of a recipe (by name) or a definition that this store lacks,
   * without building anything; a recipe's are `buildable` here.
   */
  async missingLayers(
    template: string | TemplateDefinition,
  ): Promise<{ layers: string[]; buildable: boolean }> {
    if (typeof template !== 'string')
      return { layers: await this.artefacts.absentLayers(template.layers), buildable: false };
    const plan = await this.plan(template);
    return { layers: await this.artefacts.absentLayers([plan.debianHash]), buildable: true };
  }

  /**
   * The template's ext4 root disk (for microVMs), made on first use: `mkfs.ext4 -d` of
   * its layers merged read-only by overlayfs in a private mount namespace.
   */
  async ensureDisk(template: ResolvedTemplate, options: BuildOptions = {}): Promise<ResolvedTemplate> {
    await this.makeDisk(template, options);
    return withDiskId(template);
  }

  private async makeDisk(template: ResolvedTemplate, options: BuildOptions): Promise<void> {
    const reporter = options.reporter ?? silentReporter;
    if (
      await stat(template.disk).then(
        () => true,
        () => false,
      )
    )
      return;
    await mkdir(this.paths.locks, { recursive: true });
    const lock = await lockFile(join(this.paths.locks, `disk-${template.hash}.lock`), {
      signal: options.signal,
    });
    try {
      if (
        await stat(template.disk).then(
          () => true,
          () => false,
        )
      )
        return;
      await mkdir(this.paths.tmp, { recursive: true });
      const tmp = join(this.paths.tmp, `disk-${template.hash}.ext4`);
      await rm(tmp, { force: true });
      try {
        await runStep(
          reporter,
          'ext4',
          `ext4 disk image of ${template.name} (${template.diskSizeMiB} MiB, sparse)`,
          async () => {
            await makeExt4FromLayers(
              tmp,
              template.diskSizeMiB,
              template.rootfsLayers,
              'aiva-root',
              options.signal,
            );
            await chmod(tmp, 0o444);
          },
        );
        await rename(tmp, template.disk);
      } finally {
        await rm(tmp, { force: true });
      }
      return;
    } finally {
      await lock.release();
    }
  }

  private async ensureDebianLayer(plan: RecipePlan, options: BuildOptions): Promise<void> {
    const reporter = options.reporter ?? silentReporter;
    const title = `Debian ${plan.recipe.debian.suite} with ${plan.recipe.packages.length} packages`;
    await this.artefacts.ensureLayer(
      plan.debianHash,
      { role: 'debian', template: plan.recipe.name },
      title,
      options,
      async (rootfs, tmp) => {
        const work = join(tmp, 'work');
        await mkdir(work);
        await buildDebianRootfs(plan.recipe, rootfs, work, reporter, 'debian', {
          signal: options.signal,
          recipesDir: this.options.recipesDir,
        });
        await rm(work, { recursive: true });
      },
    );
  }

  /**
   * The guest layer (envd, init and what they run on) of this aiva, made if the store
   * lacks it; its hash. `template` is only what its record says it was made for.
   */
  ensureGuestLayer(template: string, options: BuildOptions = {}): Promise<string> {
    return this.guest.ensure(template, options);
  }

  /** A template already in the store, by its hash (what a running sandbox was made from). */
  async templateByHash(hash: string): Promise<ResolvedTemplate | undefined> {
    const record = await readJson<TemplateImage>(join(this.paths.images, hash, 'image.json'));
    return record && withDiskId(this.resolveTemplate(record));
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
    return this.artefacts.building(`kernel-${hash}`, recordFile, options, resolve, async (tmp) => {
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
      await writeJson(join(tmp, 'kernel.json'), record);
      await this.artefacts.publish(tmp, dir);
      return resolve(record);
    });
  }

  /** Everything in the store, with sizes; `current` marks what new sandboxes would use. */
  async list(): Promise<StoredArtefact[]> {
    const out: StoredArtefact[] = [];
    const templates = await this.artefacts.records<TemplateImage>(this.paths.images, 'image.json');
    const currentHashes = new Set<string>();
    const guest = await this.guestLayerSource().catch(() => undefined);
    for (const t of new Set(templates.filter((x) => x.recipeHash).map((x) => x.name))) {
      const plan = await this.plan(t).catch(() => undefined);
      if (plan && guest) currentHashes.add(imageHash(guest.hash, this.recipeDefinition(plan)));
    }
    for (const t of templates) {
      // The disk is made on first use by a microVM: a template only containers used has none.
      const u = await fileUsage(join(this.paths.images, t.hash, 'rootfs.ext4')).catch(
        (e: NodeJS.ErrnoException) => {
          if (e.code === 'ENOENT') return { apparentBytes: 0, allocatedBytes: 0 };
          throw e;
        },
      );
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
    for (const k of await this.artefacts.records<GuestKernel>(this.paths.kernels, 'kernel.json')) {
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
    for (const l of await this.artefacts.records<LayerRecord>(this.paths.layers, 'layer.json')) {
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
      await this.artefacts.removeLocked(`${m.kind}-${m.hash}`, join(dir, m.hash));
    }
    const remaining = await this.artefacts.records<TemplateImage>(this.paths.images, 'image.json');
    const inUse = new Set(remaining.flatMap((t) => t.layers));
    // Only recipe and guest layers go with their images: build steps' and registry images'
    // layers are cached for the builds that made them, and go with those (removeLayers).
    const layers = await this.artefacts.records<LayerRecord>(this.paths.layers, 'layer.json');
    const owned = new Set(layers.filter((l) => l.role === 'debian' || l.role === 'guest').map((l) => l.hash));
    const orphans = all.filter((a) => a.kind === 'layer' && owned.has(a.hash) && !inUse.has(a.hash));
    for (const l of orphans)
      await this.artefacts.removeLocked(`layer-${l.hash}`, join(this.paths.layers, l.hash));
    return [...matches, ...orphans];
  }

  /** Removes a template image's record (not its layers): one made for a build sandbox. */
  async discardTemplate(hash: string): Promise<void> {
    await this.artefacts.removeLocked(`template-${hash}`, join(this.paths.images, hash));
  }

  /**
   * Removes the build-step layers among `hashes` (others are ignored), with the images
   * composed from them that no sandbox uses (`inUse`); a layer an image in use needs
   * stays. Returns the hashes of the layers and template images removed (what was made
   * from those images, such as VM snapshots, is the caller's to discard).
   */
  async removeLayers(
    hashes: string[],
    options: { inUse?: Set<string> } = {},
  ): Promise<{ layers: string[]; templates: string[] }> {
    // Only build steps' layers: recipe and guest layers go with their images, and
    // registry images' layers are a cache shared by every template built on them.
    const doomed = new Set<string>();
    for (const h of hashes) if ((await this.artefacts.layer(h))?.role === 'step') doomed.add(h);
    const images = await this.artefacts.records<TemplateImage>(this.paths.images, 'image.json');
    const kept = new Set<string>();
    const templates: string[] = [];
    for (const t of images) {
      if (!t.layers.some((l) => doomed.has(l))) continue;
      if (options.inUse?.has(t.hash)) for (const l of t.layers) kept.add(l);
      else {
        await this.artefacts.removeLocked(`template-${t.hash}`, join(this.paths.images, t.hash));
        templates.push(t.hash);
      }
    }
    const layers: string[] = [];
    for (const h of doomed) {
      if (kept.has(h) || !(await this.artefacts.layer(h))) continue;
      await this.artefacts.removeLocked(`layer-${h}`, this.artefacts.layerDir(h));
      layers.push(h);
    }
    return { layers, templates };
  }
}
