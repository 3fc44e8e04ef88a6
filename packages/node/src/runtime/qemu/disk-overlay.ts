import { runCommand } from '../../host/command.js';

/**
 * A qcow2 copy-on-write layer over a read-only disk (a template's raw ext4, or a
 * snapshot's qcow2): only what the guest writes takes space. `sizeMiB` grows the
 * virtual disk beyond the backing file's size.
 */
export async function createDiskOverlay(
  path: string,
  backing: { file: string; format: 'raw' | 'qcow2' },
  sizeMiB?: number,
  signal?: AbortSignal,
): Promise<void> {
  await runCommand(
    'qemu-img',
    [
      'create',
      '-q',
      '-f',
      'qcow2',
      '-F',
      backing.format,
      '-b',
      backing.file,
      path,
      ...(sizeMiB ? [`${sizeMiB}M`] : []),
    ],
    { signal },
  );
}
