import { chmod, realpath, rm } from 'node:fs/promises';
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

interface ChainEntry {
  filename: string;
  format: string;
  'full-backing-filename'?: string;
}

async function backingChain(disk: string, signal?: AbortSignal): Promise<ChainEntry[]> {
  const { stdout } = await runCommand('qemu-img', ['info', '-U', '--backing-chain', '--output=json', disk], {
    signal,
  });
  return JSON.parse(stdout) as ChainEntry[];
}

/** How many files `disk` is made of, itself included (2: a layer over the template's ext4). */
export async function backingChainLength(disk: string, signal?: AbortSignal): Promise<number> {
  return (await backingChain(disk, signal)).length;
}

/**
 * Copies the qcow2 disk `disk` into `dest` as one qcow2 layer over the raw file at the
 * bottom of its backing chain (the template's ext4): whatever layers lie between (a VM
 * snapshot's disk) are folded in, so that `dest` needs nothing but the template. The
 * disk must not be written meanwhile (its VM stopped and its disks handed over).
 */
export async function flattenDisk(disk: string, dest: string, signal?: AbortSignal): Promise<void> {
  const chain = await backingChain(disk, signal);
  const base = chain.at(-1);
  if (base?.format !== 'raw' || chain.length < 2) {
    throw new Error(`${disk} is not a chain of qcow2 layers over a raw disk`);
  }
  const baseFile = await realpath(base.filename);
  // Bottom layer first: each one above it is committed into `dest`.
  const layers = chain.slice(0, -1).reverse();
  const tmp = `${dest}.layer`;
  try {
    for (const [i, layer] of layers.entries()) {
      const target = i === 0 ? dest : tmp;
      await runCommand('cp', ['--sparse=always', layer.filename, target], { signal });
      await chmod(target, 0o644);
      const [backing, format] = i === 0 ? [baseFile, 'raw'] : [dest, 'qcow2'];
      await runCommand('qemu-img', ['rebase', '-u', '-F', format, '-b', backing, target], { signal });
      if (i > 0) await runCommand('qemu-img', ['commit', '-q', tmp], { signal });
    }
  } finally {
    await rm(tmp, { force: true });
  }
}
