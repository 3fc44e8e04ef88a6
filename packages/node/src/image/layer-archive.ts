import { spawn } from 'node:child_process';
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Artefacts } from './artefacts.js';
import { readJson } from './artefacts.js';
import { MissingArtefactError } from './image-store.js';
import type { LayerRecord } from './image-types.js';

// A layer of the image store as it travels between stores (node → server → node): a tar
// of its directory (`rootfs/` with overlay whiteouts and xattrs, and `layer.json`) made
// by the system `tar`, with the sha256 of the tar as its digest. A receiver checks the
// digest before the layer is renamed into place: a bad one leaves nothing.

/** `--xattrs-include=*`: the overlay's `trusted.overlay.opaque` too, not only `user.*`. */
export const TAR_FLAGS = ['--numeric-owner', '--xattrs', '--xattrs-include=*', '--sparse'];

/** The digest of a layer tar did not match what its sender said, or the tar was not a layer. */
export class LayerArchiveError extends Error {
  override name = 'LayerArchiveError';
}

/** `sha256:<hex>` */
export const formatDigest = (hash: Hash) => `sha256:${hash.digest('hex')}`;

/** Passes bytes through, hashing them and counting them. */
export function hashing(): Transform & { sha256: Hash; bytes: number } {
  const sha256 = createHash('sha256');
  const t = new Transform({
    transform(chunk: Buffer, _enc, done) {
      sha256.update(chunk);
      t.bytes += chunk.length;
      done(null, chunk);
    },
  }) as Transform & { sha256: Hash; bytes: number };
  t.sha256 = sha256;
  t.bytes = 0;
  return t;
}

/** Runs `tar args` with its stdin or stdout given to `io`; rejects with tar's stderr if it fails. */
export async function tar(
  args: string[],
  io: (child: ReturnType<typeof spawn>) => Promise<void>,
  signal?: AbortSignal,
) {
  const child = spawn('tar', args, { stdio: ['pipe', 'pipe', 'pipe'], signal });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    await io(child);
  } catch (e) {
    child.kill('SIGKILL');
    await exited.catch(() => {});
    throw e;
  }
  const [code, sig] = await exited;
  if (code !== 0) throw new LayerArchiveError(`tar ${args[0]} failed (${sig ?? code}): ${stderr.trim()}`);
}

/** Writes layer `hash` of the store to `file` as a tar; its digest and size. */
export async function packLayer(
  artefacts: Artefacts,
  hash: string,
  file: string,
  signal?: AbortSignal,
): Promise<{ digest: string; bytes: number }> {
  if (!(await artefacts.layer(hash)))
    throw new MissingArtefactError(`this node's image store does not hold layer ${hash.slice(0, 12)}`, [
      hash,
    ]);
  const h = hashing();
  await tar(
    ['-c', ...TAR_FLAGS, '-C', artefacts.layerDir(hash), '-f', '-', 'rootfs', 'layer.json'],
    (child) => pipeline(child.stdout as Readable, h, createWriteStream(file)),
    signal,
  );
  return { digest: formatDigest(h.sha256), bytes: h.bytes };
}

/**
 * Puts layer `hash` into the store from the tar `source`, whose sha256 must be `digest`:
 * unpacked in tmp/ under the layer's lock, checked, then renamed into place. False if
 * the store had it already (`source` is then not read).
 */
export async function unpackLayer(
  artefacts: Artefacts,
  hash: string,
  source: Readable,
  digest: string,
  signal?: AbortSignal,
): Promise<boolean> {
  const recordFile = join(artefacts.layerDir(hash), 'layer.json');
  return artefacts.building(
    `layer-${hash}`,
    recordFile,
    { signal },
    () => false,
    async (tmp) => {
      const dir = join(tmp, 'layer');
      await mkdir(dir);
      const h = hashing();
      // --ignore-zeros: read to the end of the stream, past the end-of-archive blocks, so that
      // tar never closes its stdin early (the sender's pipe would break: "Premature close")
      // and the digest covers every byte sent.
      await tar(
        ['-x', ...TAR_FLAGS, '--ignore-zeros', '-C', dir, '-f', '-'],
        (child) => pipeline(source, h, child.stdin as NodeJS.WritableStream),
        signal,
      );
      const got = formatDigest(h.sha256);
      if (got !== digest)
        throw new LayerArchiveError(`layer ${hash.slice(0, 12)}: its digest is ${got}, not ${digest}`);
      const record = await readJson<LayerRecord>(join(dir, 'layer.json'));
      const rootfs = await stat(join(dir, 'rootfs')).then(
        (s) => s.isDirectory(),
        () => false,
      );
      if (record?.hash !== hash || !rootfs)
        throw new LayerArchiveError(`the archive of layer ${hash.slice(0, 12)} is not that layer`);
      await artefacts.publish(dir, artefacts.layerDir(hash));
      return true;
    },
  );
}
