import { chmod, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { CommandError, runCommand } from '../host/command.js';
import type { Artefacts } from './artefacts.js';
import { type BuildReporter, runStep, silentReporter } from './build-reporter.js';
import { OciImageError, skopeoError } from './oci-errors.js';
import { type Descriptor, type OciImageConfig, OciLayout } from './oci-layout.js';
import { parseReference } from './oci-reference.js';
import { LayerContentError, unpackLayer } from './oci-unpack.js';
import { contentHash } from './recipe.js';

/** Bump when unpacking changes what a layer directory holds, so older unpacks are not reused. */
const OCI_LAYER_VERSION = 1;

/** A registry or imported image, unpacked into the store's layers. */
export interface OciImage {
  /** Fully qualified (`docker.io/library/debian:stable`), or `oci:<dir>` / `docker-archive:<file>` for imports. */
  reference: string;
  /** The digest of the image manifest (linux/amd64) as the store's OCI layout holds it. */
  digest: string;
  /** Store layer hashes, top first: ready to be overlay lowerdirs (`Artefacts.layerRootfs`). */
  layers: string[];
  /** How the image says to run it. */
  config: OciImageConfig;
}

export interface OciImportOptions {
  reporter?: BuildReporter;
  signal?: AbortSignal;
}

export interface OciPullOptions extends OciImportOptions {
  /** For registries that need them; used for this pull only, never written where it outlives it. */
  credentials?: { username: string; password: string };
}

/** skopeo picks this platform from an image index; aiva's sandboxes are x86-64 Linux. */
const PLATFORM = ['--override-os', 'linux', '--override-arch', 'amd64'];

/**
 * Registry images and image archives as store layers. skopeo copies the image into the
 * store's one OCI layout (blobs shared by digest, so a known blob is never fetched
 * again); each layer is then unpacked once into `layers/<hash>/rootfs`, its hash made
 * from its diff_id, so images that share a base share its layers.
 */
export class OciImages {
  private readonly layout: OciLayout;

  constructor(private readonly artefacts: Artefacts) {
    this.layout = new OciLayout(artefacts.paths.oci, artefacts.paths.locks);
  }

  /**
   * Pulls `reference` (Docker's rules: no registry means Docker Hub, no tag `:latest`)
   * for linux/amd64. Registries on 127.0.0.0/8 or localhost are plain HTTP, any other
   * must have a verified TLS certificate. Only the given credentials are used, never
   * the host's (a root auth file must not open private images to every caller).
   */
  async pull(reference: string, options: OciPullOptions = {}): Promise<OciImage> {
    const ref = parseReference(reference);
    const image = ref.name;
    const descriptor = await this.copy(image, 'oci-pull', `pull ${image}`, options, async (tmp) => {
      const args = [`--src-tls-verify=${!ref.insecure}`];
      if (!options.credentials) return [...args, '--src-no-creds', `docker://${image}`];
      // An auth file, not --src-creds: a command line is readable by every user (ps).
      const { username, password } = options.credentials;
      const authFile = join(tmp, 'auth.json');
      const auth = Buffer.from(`${username}:${password}`).toString('base64');
      await writeFile(authFile, JSON.stringify({ auths: { [ref.registry]: { auth } } }), {
        mode: 0o600,
        flag: 'wx',
      });
      return [...args, '--src-authfile', authFile, `docker://${image}`];
    });
    await this.layout.record(image, descriptor);
    return this.unpack(image, descriptor, options);
  }

  /** Imports an OCI layout directory or a `docker save` archive (an OCI archive too) holding one image. */
  async import(path: string, options: OciImportOptions = {}): Promise<OciImage> {
    const abs = resolve(path);
    const transport = await this.transportOf(path, abs);
    const image = `${transport}:${abs}`;
    const descriptor = await this.copy(image, 'oci-import', `import ${image}`, options, async (tmp) => {
      // skopeo splits `transport:path:name` at the first colon: a link of our own naming
      // keeps a colon in the real path from being taken for a separator.
      await symlink(abs, join(tmp, 'source'));
      return [`${transport}:source`];
    });
    await this.layout.record(`imported/${descriptor.digest.replace('sha256:', '')}`, descriptor, {
      'io.aiva.imported-from': image,
    });
    return this.unpack(image, descriptor, options);
  }

  private async transportOf(path: string, abs: string): Promise<'oci' | 'docker-archive' | 'oci-archive'> {
    const refuse = (why: string) => new OciImageError(path, 'reference', `${path}: ${why}`);
    const st = await stat(abs).catch(() => undefined);
    if (!st) throw refuse('no such file or directory');
    if (st.isDirectory()) {
      if (!(await stat(join(abs, 'oci-layout')).catch(() => undefined))) {
        throw refuse('not an OCI image layout (no oci-layout file)');
      }
      return 'oci';
    }
    const listing = await runCommand('tar', ['--list', `--file=${abs}`]).catch((e: CommandError) => {
      throw refuse(`not a tar archive (${e.output.trim().split('\n')[0]})`);
    });
    const names = new Set(listing.stdout.split('\n').map((n) => n.replace(/^\.\//, '')));
    if (names.has('manifest.json')) return 'docker-archive';
    if (names.has('oci-layout')) return 'oci-archive';
    throw refuse('neither a docker save archive (manifest.json) nor an OCI archive (oci-layout)');
  }

  /**
   * skopeo-copies the image `sourceArgs` gives (its last element the source) into a
   * scratch layout whose blobs go to the shared blob directory, and returns the
   * manifest's descriptor. The scratch directory (with any auth file) goes however it ends.
   */
  private async copy(
    image: string,
    step: string,
    title: string,
    options: OciImportOptions & { credentials?: unknown },
    sourceArgs: (tmp: string) => Promise<string[]>,
  ): Promise<Descriptor> {
    const reporter = options.reporter ?? silentReporter;
    await this.layout.ensure();
    const key = `oci-${contentHash({ image }).slice(0, 32)}`;
    // A copy has no record of its own (a tag is looked up afresh every time), so the
    // record file `building` checks never exists; it serializes copies of one image.
    const noRecord = join(this.artefacts.paths.tmp, `${key}.never`);
    return this.artefacts.building(
      key,
      noRecord,
      options,
      (d: Descriptor) => d,
      async (tmp) => {
        await chmod(tmp, 0o700);
        const args = [
          'copy',
          ...PLATFORM,
          '--dest-shared-blob-dir',
          this.layout.blobs,
          ...(await sourceArgs(tmp)),
          'oci:layout:image',
        ];
        await runStep(reporter, step, title, async () => {
          try {
            await runCommand('skopeo', args, {
              cwd: tmp,
              // Big temporary files (a compressed archive's layers) stay in the scratch dir.
              env: { ...process.env, TMPDIR: tmp },
              signal: options.signal,
              processGroup: true,
              displayName: 'skopeo copy',
              onLine: (line) => reporter.output(step, line),
            });
          } catch (e) {
            throw skopeoError(image, e, options.credentials !== undefined);
          }
        });
        const index = JSON.parse(await readFile(join(tmp, 'layout', 'index.json'), 'utf8')) as {
          manifests: Descriptor[];
        };
        const manifest = index.manifests[0];
        if (!manifest) throw new OciImageError(image, 'failed', `${image}: skopeo copied no manifest`);
        return manifest;
      },
    );
  }

  /** Unpacks every layer the store lacks; the image with its layers top first. */
  private async unpack(image: string, manifest: Descriptor, options: OciImportOptions): Promise<OciImage> {
    const content = await this.layout.readManifest(image, manifest.digest);
    // skopeo chooses from an index, but copies a lone manifest whatever its platform.
    if (content.platform !== 'linux/amd64') {
      throw new OciImageError(
        image,
        'platform',
        `${image}: the image is for ${content.platform}, not linux/amd64`,
      );
    }
    const hashes: string[] = [];
    for (const [i, layer] of content.layers.entries()) {
      const hash = contentHash({ v: OCI_LAYER_VERSION, role: 'oci', diffId: layer.diffId });
      const title = `layer ${i + 1}/${content.layers.length} of ${image} (${layer.diffId.slice(7, 19)})`;
      await this.artefacts.ensureLayer(
        hash,
        { role: 'oci', template: image },
        title,
        options,
        async (rootfs) => {
          try {
            await unpackLayer(layer, rootfs, options.signal);
          } catch (e) {
            const why = e instanceof Error ? e.message : String(e);
            const reason =
              e instanceof CommandError && e.aborted
                ? 'interrupted'
                : e instanceof LayerContentError ||
                    (e instanceof CommandError && !/No space left on device/.test(e.output))
                  ? 'invalid'
                  : 'failed';
            throw new OciImageError(
              image,
              reason,
              `${image}: layer ${layer.diffId} cannot be unpacked: ${why}`,
              {
                cause: e,
              },
            );
          }
        },
      );
      hashes.push(hash);
    }
    return { reference: image, digest: manifest.digest, layers: hashes.reverse(), config: content.config };
  }
}
