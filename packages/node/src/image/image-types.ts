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
  /** The code-interpreter server's guest files, installed under GUEST_DIR/code-interpreter. */
  codeInterpreterDir?: string;
  /** The MCP gateway's guest files, installed under GUEST_DIR/mcp-gateway. */
  mcpGatewayDir?: string;
  /** The host programs the guest layer carries (default: `hostGuestTools()` of guest-layer.ts). */
  guestTools?: Partial<GuestTools>;
}

/** Host programs copied into the guest layer, so that envd needs nothing from a template's rootfs. */
export interface GuestTools {
  /** A static busybox: the init's shell and applets, and envd's shell where there is no /bin/bash. */
  busybox: string;
  /** A static tini: reaps orphans and forwards signals as PID 1's child. */
  tini: string;
  /** The Node runtime envd runs on; a dynamic one is carried with its libraries and loader. */
  node: string;
}

export interface BuildOptions {
  reporter?: BuildReporter;
  signal?: AbortSignal;
}

/** What a sandbox of a template runs as, and in what, unless its create says otherwise. */
export type TemplateDefaults = Recipe['defaults'];

/**
 * The command a template's sandboxes start with, and the check that says it is ready
 * (E2B's `startCmd`/`readyCmd`): run by envd as the template's user, in its workdir.
 */
export interface TemplateStart {
  cmd: string;
  /** A shell command that exits 0 once the start command is ready. */
  ready?: string;
  /** The environment both run with (a build's ENV steps). */
  env?: Record<string, string>;
}

/**
 * What a template is, independent of envd: its content layers and how its sandboxes
 * start. Recipe templates and built templates alike; the store composes it with the
 * current guest layer into a `TemplateImage`.
 */
export interface TemplateDefinition {
  name: string;
  /** Content layer hashes, top first (never the guest layer). */
  layers: string[];
  diskSizeMiB: number;
  defaults: TemplateDefaults;
  /** Environment variables every process of the sandbox gets. */
  env?: Record<string, string>;
  start?: TemplateStart;
  /** Hash of the recipe file's content (recipe templates). */
  recipeHash?: string;
}

/** A template image in the store: a definition with the guest layer (envd) on top. */
export interface TemplateImage extends TemplateDefinition {
  kind: 'template';
  hash: string;
  /** Layer hashes, top first: the guest layer, then the definition's. */
  layers: string[];
  createdAt: string;
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
  /**
   * What the layer holds: `debian` (a recipe's packages), `guest` (envd and init), `oci`
   * (a layer of a registry image), `step` (what one step of a template build changed).
   */
  role: 'debian' | 'guest' | 'oci' | 'step';
  /** What it was made for: the template, image reference or build step. */
  template: string;
  createdAt: string;
}

/** Paths of a template image's parts, for the runtimes. */
export interface ResolvedTemplate extends TemplateImage {
  /**
   * The ext4 root disk (read-only; sandboxes get copy-on-write overlays), for microVMs.
   * Made on first use (`ImageStore.ensureDisk`): containers never need it.
   */
  disk: string;
  /**
   * Which making of the disk this is (its inode and mtime), set by `ensureDisk`: a disk
   * made again has another, so nothing saved over the old one (a VM snapshot's overlay)
   * is taken for the new one.
   */
  diskId?: string;
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
