import { createHash, randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lockFile } from '../host/file-lock.js';
import { readJson } from './artefacts.js';
import { OciImageError } from './oci-errors.js';

// The store's one OCI image layout (`images/oci/`): skopeo writes blobs into
// `blobs/sha256/` (`--dest-shared-blob-dir`: each one to a temporary file in the pull's
// own scratch layout, renamed into place once its digest checked out, so a blob under
// its name is whole), and we record in `index.json` which manifest each image is.

export const MEDIA = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
} as const;

/** How a layer blob is compressed, by its media type (OCI, as skopeo writes into an OCI layout). */
const LAYER_MEDIA: Record<string, Compression> = {
  'application/vnd.oci.image.layer.v1.tar': 'none',
  'application/vnd.oci.image.layer.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.v1.tar+zstd': 'zstd',
  'application/vnd.oci.image.layer.nondistributable.v1.tar': 'none',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip': 'gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd': 'zstd',
};

export type Compression = 'none' | 'gzip' | 'zstd';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

interface Manifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    Env?: string[];
    WorkingDir?: string;
    User?: string;
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
  };
  rootfs?: { type?: string; diff_ids?: string[] };
}

/** One layer of an image, bottom first as in the manifest. */
export interface OciLayerBlob {
  blob: string;
  compression: Compression;
  /** sha256 of the uncompressed tar, from the image config. */
  diffId: string;
}

/** What a manifest says, checked: its layers with their diff_ids, and how to run it. */
export interface ManifestContent {
  /** `os/architecture` from the config, e.g. `linux/amd64`. */
  platform: string;
  layers: OciLayerBlob[];
  config: OciImageConfig;
}

/** How an image says to run it (its config's `Env`, `WorkingDir`, `User`, `Entrypoint`, `Cmd`). */
export interface OciImageConfig {
  env: Record<string, string>;
  workdir?: string;
  user?: string;
  entrypoint?: string[];
  cmd?: string[];
}

const DIGEST = /^sha256:([0-9a-f]{64})$/;

export class OciLayout {
  readonly blobs: string;
  private readonly index: string;

  constructor(
    readonly dir: string,
    private readonly locks: string,
  ) {
    this.blobs = join(dir, 'blobs');
    this.index = join(dir, 'index.json');
  }

  /** Makes the layout if it is not there yet (idempotent, safe to race). */
  async ensure(): Promise<void> {
    await mkdir(join(this.blobs, 'sha256'), { recursive: true });
    await this.writeAtomic(join(this.dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}\n', true);
    await this.writeAtomic(this.index, '{"schemaVersion":2,"manifests":[]}\n', true);
  }

  blobPath(digest: string): string {
    const hex = DIGEST.exec(digest)?.[1];
    if (!hex) throw new Error(`unsupported digest "${digest}" (only sha256)`);
    return join(this.blobs, 'sha256', hex);
  }

  /** A small JSON blob (manifest, config), its digest checked. */
  private async jsonBlob<T>(image: string, digest: string): Promise<T> {
    const data = await readFile(this.blobPath(digest));
    if (`sha256:${createHash('sha256').update(data).digest('hex')}` !== digest) {
      throw new OciImageError(image, 'invalid', `${image}: blob ${digest} does not match its digest`);
    }
    return JSON.parse(data.toString('utf8')) as T;
  }

  /** The layers and run configuration of the image manifest `digest`, refusing what we cannot unpack. */
  async readManifest(image: string, digest: string): Promise<ManifestContent> {
    const bad = (reason: 'media-type' | 'invalid', why: string) =>
      new OciImageError(image, reason, `${image}: ${why}`);
    const manifest = await this.jsonBlob<Manifest>(image, digest);
    const type = manifest.mediaType ?? MEDIA.ociManifest;
    if (type !== MEDIA.ociManifest || !manifest.config || !Array.isArray(manifest.layers)) {
      throw bad('media-type', `manifest ${digest} is ${type}, not an OCI image manifest`);
    }
    if (manifest.config.mediaType !== MEDIA.ociConfig) {
      throw bad(
        'media-type',
        `unsupported config media type ${manifest.config.mediaType} (not a container image)`,
      );
    }
    const config = await this.jsonBlob<ImageConfig>(image, manifest.config.digest);
    const diffIds = config.rootfs?.diff_ids ?? [];
    if (diffIds.length !== manifest.layers.length) {
      throw bad('invalid', `${manifest.layers.length} layers but ${diffIds.length} diff_ids in the config`);
    }
    const layers = manifest.layers.map((l, i): OciLayerBlob => {
      const compression = LAYER_MEDIA[l.mediaType];
      if (!compression) throw bad('media-type', `unsupported layer media type ${l.mediaType}`);
      const diffId = diffIds[i] ?? '';
      if (!DIGEST.test(diffId)) throw bad('invalid', `layer ${i} has diff_id "${diffId}" (only sha256)`);
      return { blob: this.blobPath(l.digest), compression, diffId };
    });
    const c = config.config ?? {};
    const env: Record<string, string> = {};
    for (const kv of c.Env ?? []) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    return {
      platform: `${config.os ?? '?'}/${config.architecture ?? '?'}`,
      layers,
      config: {
        env,
        workdir: c.WorkingDir || undefined,
        user: c.User || undefined,
        entrypoint: c.Entrypoint ?? undefined,
        cmd: c.Cmd ?? undefined,
      },
    };
  }

  /**
   * Names the manifest `descriptor` `refName` in index.json (replacing what the name
   * meant before: a tag moves), under a lock and by rename, so the index is always whole.
   */
  async record(
    refName: string,
    descriptor: Descriptor,
    annotations: Record<string, string> = {},
  ): Promise<void> {
    await mkdir(this.locks, { recursive: true });
    const lock = await lockFile(join(this.locks, 'oci-index.lock'));
    try {
      const index = (await readJson<{ schemaVersion: 2; manifests: Descriptor[] }>(this.index)) ?? {
        schemaVersion: 2,
        manifests: [],
      };
      const key = 'org.opencontainers.image.ref.name';
      index.manifests = index.manifests.filter((m) => m.annotations?.[key] !== refName);
      index.manifests.push({
        mediaType: descriptor.mediaType,
        digest: descriptor.digest,
        size: descriptor.size,
        annotations: { ...annotations, [key]: refName },
      });
      await this.writeAtomic(this.index, `${JSON.stringify(index, null, 2)}\n`, false);
    } finally {
      await lock.release();
    }
  }

  /**
   * Writes `file` whole or not at all: a temporary file renamed over it, or with
   * `onlyIfMissing` linked to its name (which fails if another process made it first, so
   * a fresh empty index never replaces one just written).
   */
  private async writeAtomic(file: string, text: string, onlyIfMissing: boolean): Promise<void> {
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(tmp, text);
    try {
      if (!onlyIfMissing) await rename(tmp, file);
      else
        await link(tmp, file).catch((e: NodeJS.ErrnoException) => {
          if (e.code !== 'EEXIST') throw e;
        });
    } finally {
      await rm(tmp, { force: true });
    }
  }
}
