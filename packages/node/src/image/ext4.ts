import { mkdir, rm } from 'node:fs/promises';
import { runCommand } from '../host/command.js';
import { overlayLowerdir } from '../host/mounts.js';

/**
 * Makes a sparse ext4 image of `sizeMiB` holding `fromDir`, without mounting anything
 * (`mkfs.ext4 -d`). Ownership, modes and extended attributes are copied.
 */
export async function makeExt4(
  file: string,
  sizeMiB: number,
  fromDir: string,
  label: string,
  signal?: AbortSignal,
): Promise<void> {
  await runCommand(
    'mkfs.ext4',
    ['-F', '-q', '-m', '0', '-L', label, '-E', 'lazy_itable_init=1', '-d', fromDir, file, `${sizeMiB}M`],
    { signal },
  );
}

/**
 * Makes a sparse ext4 image holding the merged view of `layers` (overlay lower
 * directories, top first): they are mounted read-only by overlayfs in a private mount
 * namespace, which takes the mount with it however the command ends.
 */
export async function makeExt4FromLayers(
  file: string,
  sizeMiB: number,
  layers: string[],
  label: string,
  signal?: AbortSignal,
): Promise<void> {
  if (layers.length === 1) return makeExt4(file, sizeMiB, layers[0] as string, label, signal);
  const mnt = `${file}.mnt`;
  await mkdir(mnt, { recursive: true });
  try {
    // Paths are passed as arguments, not spliced into the script.
    const { lowerdir, cwd } = overlayLowerdir(layers);
    const script =
      'set -e; mount -t overlay overlay -o "ro,lowerdir=$4" "$1"; ' +
      'mkfs.ext4 -F -q -m 0 -L "$3" -E lazy_itable_init=1 -d "$1" "$2" "$5"M';
    await runCommand(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        script,
        'sh',
        mnt,
        file,
        label,
        lowerdir,
        String(sizeMiB),
      ],
      { signal, cwd },
    );
  } finally {
    await rm(mnt, { recursive: true, force: true });
  }
}
