import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { formatDigest, hashing, LayerArchiveError, TAR_FLAGS, tar } from '../image/layer-archive.js';
import { SandboxSpecError } from '../runtime/types.js';
import type { CheckpointStore } from './checkpoint-store.js';

// A checkpoint as it travels between nodes (node → server → node), the way a layer does:
// a tar of its directory (sparse files kept sparse, owners and xattrs kept), its digest
// the sha256 of the tar. A receiver checks the digest and the record before the
// checkpoint is renamed into place: a bad one leaves nothing.

/** Writes checkpoint `name` to `file` as a tar; its digest and size. */
export async function packCheckpoint(
  store: CheckpointStore,
  name: string,
  file: string,
  signal?: AbortSignal,
): Promise<{ digest: string; bytes: number }> {
  if (!(await store.find(name))) throw new SandboxSpecError(`this node has no checkpoint ${name}`);
  const h = hashing();
  await tar(
    ['-c', ...TAR_FLAGS, '-C', store.path(name), '-f', '-', '.'],
    (child) => pipeline(child.stdout as Readable, h, createWriteStream(file)),
    signal,
  );
  return { digest: formatDigest(h.sha256), bytes: h.bytes };
}

/**
 * Puts checkpoint `name` into the store from the tar `source`, whose sha256 must be
 * `digest`. False if the store had it already.
 */
export async function unpackCheckpoint(
  store: CheckpointStore,
  name: string,
  source: Readable,
  digest: string,
  signal?: AbortSignal,
): Promise<boolean> {
  return store.adopt(name, async (work) => {
    const h = hashing();
    // --ignore-zeros: read the whole stream, so that the digest covers every byte sent.
    await tar(
      ['-x', ...TAR_FLAGS, '--ignore-zeros', '-C', work, '-f', '-'],
      (child) => pipeline(source, h, child.stdin as NodeJS.WritableStream),
      signal,
    );
    const got = formatDigest(h.sha256);
    if (got !== digest)
      throw new LayerArchiveError(`checkpoint ${name}: its digest is ${got}, not ${digest}`);
  });
}
