import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../../host/command.js';

/**
 * A container sandbox's disk: a sparse ext4 image of the sandbox's disk size in its
 * directory, loop-mounted, holding the overlay's upper and work directories. What the
 * sandbox writes (/tmp included) lands there, so a full disk is ENOSPC inside the
 * sandbox and the host's disk gives at most the image's size. `df /` in the sandbox
 * shows it (overlayfs reports its upper filesystem), and so do E2B's disk metrics.
 *
 * Chosen over project quotas: those need a filesystem made or tuned for them (XFS, or
 * ext4 with the `project` feature, off on a mounted root filesystem), and aiva's data
 * directory is usually on the host's root filesystem. An image costs a `mkfs.ext4` and a
 * loop mount per create (see `npm run bench -- sdk`).
 *
 * Without a journal: the disk lives no longer than its sandbox (a checkpoint copies its
 * files out), and a journal would double every metadata write. Nothing is reserved for
 * root (`-m 0`): the sandbox has the whole size. `nodev`: device files written by the
 * sandbox cannot be opened through it.
 */
export class SandboxDisk {
  readonly image: string;
  readonly mountPoint: string;

  constructor(dir: string) {
    this.image = join(dir, 'disk.ext4');
    this.mountPoint = join(dir, 'disk');
  }

  /** The overlay's upper directory (the sandbox's changes) and its work directory. */
  get upper(): string {
    return join(this.mountPoint, 'upper');
  }
  get work(): string {
    return join(this.mountPoint, 'work');
  }

  /** Makes the image (sparse), formats and mounts it, with empty upper and work directories. */
  async create(sizeMiB: number, signal?: AbortSignal): Promise<void> {
    const file = await open(this.image, 'wx', 0o600);
    try {
      await file.truncate(sizeMiB * 1024 * 1024);
    } finally {
      await file.close();
    }
    await runCommand(
      'mkfs.ext4',
      [
        '-F',
        '-q',
        '-m',
        '0',
        '-O',
        '^has_journal',
        '-E',
        'lazy_itable_init=1,nodiscard',
        '-L',
        'aiva-disk',
        this.image,
      ],
      { signal },
    );
    await this.mount(signal);
    await mkdir(this.upper, { mode: 0o755 });
    await mkdir(this.work, { mode: 0o700 });
  }

  /** Mounts the image (made by `create`, kept while its sandbox was paused without memory). */
  async mount(signal?: AbortSignal): Promise<void> {
    await mkdir(this.mountPoint, { recursive: true });
    // `-o loop` gives the loop device autoclear: the unmount frees it.
    await runCommand('mount', ['-t', 'ext4', '-o', 'loop,nodev', this.image, this.mountPoint], { signal });
  }

  /** Removes the image (the caller has unmounted it). */
  async remove(): Promise<void> {
    await rm(this.image, { force: true });
    await rm(this.mountPoint, { recursive: true, force: true });
  }
}
