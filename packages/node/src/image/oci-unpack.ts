import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CommandError, runCommand } from '../host/command.js';
import type { OciLayerBlob } from './oci-layout.js';

// An OCI layer blob → a directory overlayfs takes as a lower layer. GNU tar extracts it
// (as root: owners by number, modes, xattrs); the uncompressed stream is hashed on its
// way to tar and must be the diff_id the image config promised, since layers are shared
// by that id: an image claiming another's diff_id with other content would otherwise
// poison every image that has the real one. Then OCI whiteouts become overlayfs's.

const OPAQUE_MARKER = '.wh..wh..opq';
const WHITEOUT_PREFIX = '.wh.';

/**
 * tar's refusal of unsafe members is what keeps a hostile layer inside `rootfs`: it
 * strips leading `/`, skips members whose names hold `..`, and makes a symlink to an
 * absolute or `..` target only after everything else is extracted (a placeholder file
 * stands in until then, so `link -> /etc` then `link/passwd` fails). It reports such
 * members and exits non-zero; we then refuse the layer.
 */
function tarArgs(rootfs: string): string[] {
  return [
    '--extract',
    '--file=-',
    `--directory=${rootfs}`,
    '--numeric-owner',
    '--same-owner',
    '--same-permissions',
    '--xattrs',
    '--xattrs-include=*',
    // overlayfs's own attributes come only from our whiteout conversion: a layer's
    // trusted.overlay.* (opaque, redirect, metacopy) would steer the sandbox's overlay.
    '--xattrs-exclude=trusted.overlay.*',
  ];
}

/** The content of a layer is not what its image says, or not a layer at all. */
export class LayerContentError extends Error {
  override name = 'LayerContentError';
}

/**
 * Starts `cmd` as the source (its stdout piped to us) or the sink (its stdin piped from
 * us) of a stream; `exited` resolves when it exits 0, rejects with its stderr's tail
 * otherwise. runCommand buffers output and takes input whole, which a layer of
 * gigabytes cannot be.
 */
function start(
  cmd: string,
  args: string[],
  role: 'source' | 'sink',
): { child: ChildProcess; exited: Promise<void> } {
  const stdio =
    role === 'source' ? (['ignore', 'pipe', 'pipe'] as const) : (['pipe', 'ignore', 'pipe'] as const);
  const child = spawn(cmd, args, { stdio: [...stdio] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4096);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e) => reject(new CommandError(cmd, null, null, e.message, false)));
    child.on('close', (code, signal) => {
      if (code === 0) resolve();
      else reject(new CommandError(cmd, code, signal, stderr, false));
    });
  });
  return { child, exited };
}

/** Extracts the layer into `rootfs` (which must exist) and returns the sha256 of its uncompressed tar. */
async function extract(layer: OciLayerBlob, rootfs: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  const hashing = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      done(null, chunk);
    },
  });
  // An AbortSignal fires no event for an abort that has already happened.
  if (signal?.aborted) throw new CommandError('tar', null, null, '', true);
  const tools: { child: ChildProcess; exited: Promise<void> }[] = [];
  let source: NodeJS.ReadableStream;
  if (layer.compression === 'none') source = createReadStream(layer.blob);
  else {
    const decompressor = start(
      layer.compression === 'gzip' ? 'gzip' : 'zstd',
      ['-dc', '--', layer.blob],
      'source',
    );
    tools.push(decompressor);
    source = decompressor.child.stdout as NodeJS.ReadableStream;
  }
  const tar = start('tar', tarArgs(rootfs), 'sink');
  tools.push(tar);
  const kill = () => {
    for (const t of tools) t.child.kill('SIGKILL');
  };
  signal?.addEventListener('abort', kill, { once: true });
  try {
    const streamed = pipeline(source, hashing, tar.child.stdin as NodeJS.WritableStream);
    // The tools' own failures say more than the broken pipes they cause, and tar's most
    // of all (a decompressor whose reader died fails of that): wait for all, tar first.
    const results = await Promise.allSettled([...[...tools].reverse().map((t) => t.exited), streamed]);
    if (signal?.aborted) throw new CommandError('tar', null, null, '', true);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return `sha256:${hash.digest('hex')}`;
  } finally {
    signal?.removeEventListener('abort', kill);
    kill();
  }
}

/**
 * OCI whiteouts → overlayfs: `.wh.<name>` becomes a 0/0 character device `<name>` (unless
 * this layer itself has `<name>`: a whiteout only hides lower layers), and a directory
 * holding `.wh..wh..opq` gets `trusted.overlay.opaque=y`. Only real directories are
 * walked (a Dirent of a symlink is not a directory), so nothing outside `rootfs` is touched.
 */
async function convertWhiteouts(rootfs: string, signal?: AbortSignal): Promise<void> {
  const opaque: string[] = [];
  const hidden: { dir: string; name: string }[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, e.name);
      if (e.name === OPAQUE_MARKER) {
        await rm(path, { recursive: true });
        opaque.push(dir);
      } else if (e.name.startsWith(`${WHITEOUT_PREFIX}${WHITEOUT_PREFIX}`)) {
        // Reserved names (aufs's .wh..wh.plnk and the like): metadata, not content.
        await rm(path, { recursive: true });
      } else if (e.name.startsWith(WHITEOUT_PREFIX)) {
        const name = e.name.slice(WHITEOUT_PREFIX.length);
        if (name === '' || name === '.' || name === '..')
          throw new LayerContentError(`invalid whiteout ${e.name}`);
        await rm(path, { recursive: true });
        hidden.push({ dir, name });
      } else if (e.isDirectory()) {
        await walk(path);
      }
    }
  };
  await walk(rootfs);
  for (const { dir, name } of hidden) {
    const target = join(dir, name);
    const exists = await lstat(target).then(
      () => true,
      () => false,
    );
    if (!exists) await runCommand('mknod', ['--mode=0000', target, 'c', '0', '0'], { signal });
  }
  for (let i = 0; i < opaque.length; i += 200) {
    const dirs = opaque.slice(i, i + 200);
    await runCommand('setfattr', ['-h', '-n', 'trusted.overlay.opaque', '-v', 'y', ...dirs], { signal });
  }
}

/** Unpacks `layer` into `rootfs` (a new directory) in overlayfs's format, checking its diff_id. */
export async function unpackLayer(layer: OciLayerBlob, rootfs: string, signal?: AbortSignal): Promise<void> {
  await mkdir(rootfs, { mode: 0o755 });
  const diffId = await extract(layer, rootfs, signal);
  if (diffId !== layer.diffId) {
    throw new LayerContentError(`layer content is ${diffId}, but the image config says ${layer.diffId}`);
  }
  await convertWhiteouts(rootfs, signal);
}
