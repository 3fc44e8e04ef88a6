import type { BuildReporter } from './build-reporter.js';
import type { KernelInfo } from './guest-kernel.js';
import type { Recipe } from './recipe.js';

// What the image store keeps and hands out: its records and the resolved paths the
// runtimes use.

/** Where the guest-side files of every template are installed. */
export const GUEST_DIR = '/usr/local/lib/aiva';
export const GUEST_INIT = `${GUEST_DIR}/init`;

export interface ImageStoreOptions {
  /** The data directory. */
  home: string;
  /** The images/ directory of recipes. */
  recipesDir: string;
  /**
   * envd's guest files (its bundle, `envd.js`, and any helpers beside it); installed
   * with `images/guest/init` into every template under GUEST_DIR.
   */
  envdDir: string;
}

export interface BuildOptions {
  reporter?: BuildReporter;
  signal?: AbortSignal;
}

/** A template image in the store. */
export interface TemplateImage {
  kind: 'template';
  name: string;
  hash: string;
  /** Hash of the recipe file's content. */
  recipeHash: string;
  /** Layer hashes, top first: envd, then Debian. */
  layers: string[];
  diskSizeMiB: number;
  defaults: Recipe['defaults'];
  createdAt: string;
  buildSeconds: number;
}

/** The guest kernel and initramfs for microVMs. */
export interface GuestKernel extends KernelInfo {
  kind: 'kernel';
  name: 'kernel';
  hash: string;
  recipeHash: string;
  createdAt: string;
  buildSeconds: number;
}

export interface LayerRecord {
  kind: 'layer';
  hash: string;
  /** What the layer holds: `debian` (the recipe's packages) or `guest` (envd and init). */
  role: 'debian' | 'guest';
  template: string;
  createdAt: string;
}

/** Paths of a template image's parts, for the runtimes. */
export interface ResolvedTemplate extends TemplateImage {
  /** The ext4 root disk (read-only; sandboxes get copy-on-write overlays). */
  disk: string;
  /** Root filesystem directories, top first (overlay lowerdirs). */
  rootfsLayers: string[];
}

export interface ResolvedKernel extends GuestKernel {
  /** bzImage, for QEMU. */
  kernel: string;
  /** Uncompressed ELF kernel, for Firecracker. */
  vmlinux: string;
  initrd: string;
}

/** One row of `aiva image ls`. */
export interface StoredArtefact {
  kind: 'template' | 'kernel' | 'layer';
  name: string;
  hash: string;
  recipeHash?: string;
  createdAt: string;
  apparentBytes: number;
  allocatedBytes: number;
  /** Built from the current recipe (and envd), so what a new sandbox would use. */
  current: boolean;
  /** Layers: the templates that use it. */
  usedBy?: string[];
}
