// OCI images made by hand for the tests: layer tars from directories (GNU tar), blobs,
// manifests, image indexes and index.json written as the image-spec says. Nothing
// is fetched from anywhere.
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../host/command.js';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string };
  annotations?: Record<string, string>;
}

export interface Layer {
  descriptor: Descriptor;
  diffId: string;
}

export type Compression = 'gzip' | 'zstd' | 'none';

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

/** The tar of `dir`'s content (members `./…`), owners by number, with xattrs. */
export async function tarOf(dir: string, work: string): Promise<Buffer> {
  const file = join(work, `layer-${Math.random().toString(16).slice(2)}.tar`);
  await runCommand('tar', ['-c', '-f', file, '--numeric-owner', '--xattrs', '-C', dir, '.']);
  return readFile(file);
}

/** `tar` compressed as the layer media type says. */
async function compress(tar: Buffer, how: Compression, work: string): Promise<Buffer> {
  if (how === 'none') return tar;
  const file = join(work, `c-${Math.random().toString(16).slice(2)}.tar`);
  await writeFile(file, tar);
  if (how === 'gzip') await runCommand('gzip', ['-n', '-q', file]);
  else await runCommand('zstd', ['-q', '--rm', file, '-o', `${file}.zst`]);
  return readFile(how === 'gzip' ? `${file}.gz` : `${file}.zst`);
}

const LAYER_TYPES: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
};

/** An OCI image layout being written: blobs, then images, then `index.json`. */
export class LayoutWriter {
  private readonly refs: Descriptor[] = [];

  constructor(
    readonly dir: string,
    private readonly work: string,
  ) {}

  async blob(data: Buffer, mediaType: string): Promise<Descriptor> {
    const digest = sha256(data);
    await mkdir(join(this.dir, 'blobs', 'sha256'), { recursive: true });
    await writeFile(join(this.dir, 'blobs', 'sha256', digest.slice(7)), data);
    return { mediaType, digest, size: data.length };
  }

  /** A layer blob from an uncompressed tar; `mediaType` overrides the one compression implies. */
  async layer(tar: Buffer, how: Compression, mediaType?: string): Promise<Layer> {
    const data = await compress(tar, how, this.work);
    return { descriptor: await this.blob(data, mediaType ?? LAYER_TYPES[how]), diffId: sha256(tar) };
  }

  /** An image manifest over `layers` (bottom first) with the runtime `config`. */
  async image(
    layers: Layer[],
    config: Record<string, unknown> = {},
    architecture = 'amd64',
  ): Promise<Descriptor> {
    const imageConfig = {
      architecture,
      os: 'linux',
      config,
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    };
    const configBlob = await this.blob(
      Buffer.from(JSON.stringify(imageConfig)),
      'application/vnd.oci.image.config.v1+json',
    );
    const manifest = {
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: configBlob,
      layers: layers.map((l) => l.descriptor),
    };
    const d = await this.blob(Buffer.from(JSON.stringify(manifest)), manifest.mediaType);
    return { ...d, platform: { os: 'linux', architecture } };
  }

  /** An image index of `manifests` (each with its platform). */
  async index(manifests: Descriptor[]): Promise<Descriptor> {
    const index = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests };
    return this.blob(Buffer.from(JSON.stringify(index)), index.mediaType);
  }

  /** Names `d` `name` in index.json (skopeo: `oci:<dir>:<name>`) and writes the layout's files. */
  async tag(d: Descriptor, name: string): Promise<void> {
    const { platform: _, ...plain } = d;
    this.refs.push({ ...plain, annotations: { 'org.opencontainers.image.ref.name': name } });
    await writeFile(join(this.dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: this.refs }));
  }
}
