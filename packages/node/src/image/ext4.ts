import { readdir, readFile, readlink, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from '../host/command.js';

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

interface TreeEntry {
  path: string;
  kind: 'dir' | 'file' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  target?: string;
}

async function walk(root: string, rel = ''): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const entries = await readdir(join(root, rel), { withFileTypes: true });
  entries.sort((a, b) => a.name.localeCompare(b.name));
  for (const e of entries) {
    const path = `${rel}/${e.name}`;
    const st = await stat(join(root, path)).catch(() => undefined);
    const base = { path, mode: (st?.mode ?? 0o777) & 0o7777, uid: st?.uid ?? 0, gid: st?.gid ?? 0 };
    if (e.isSymbolicLink()) {
      out.push({ ...base, kind: 'symlink', target: await readlink(join(root, path)) });
    } else if (e.isDirectory()) {
      out.push({ ...base, kind: 'dir' });
      out.push(...(await walk(root, path)));
    } else if (e.isFile()) {
      out.push({ ...base, kind: 'file' });
    } else {
      throw new Error(`${join(root, path)}: only files, directories and symlinks can be added`);
    }
  }
  return out;
}

/**
 * Adds the files of `treeDir` to the ext4 image `file` with debugfs (no mount), then
 * reads every file back from the image (into `scratchDir`) to prove it landed.
 * Directories present in both keep their contents and take the tree's mode and owner;
 * files must be new to the image.
 */
export async function addTreeToExt4(
  file: string,
  treeDir: string,
  scratchDir: string,
  signal?: AbortSignal,
): Promise<void> {
  const entries = await walk(treeDir);
  const cmds: string[] = [];
  const q = (p: string) => `"${p.replaceAll('"', '\\"')}"`;
  for (const e of entries) {
    if (e.kind === 'dir') cmds.push(`mkdir ${q(e.path)}`);
    else if (e.kind === 'file') cmds.push(`write ${q(join(treeDir, e.path))} ${q(e.path)}`);
    else cmds.push(`symlink ${q(e.path)} ${q(e.target ?? '')}`);
    if (e.kind !== 'symlink') {
      const type = e.kind === 'dir' ? 0o040000 : 0o100000;
      cmds.push(
        `set_inode_field ${q(e.path)} mode 0${(type | e.mode).toString(8)}`,
        `set_inode_field ${q(e.path)} uid ${e.uid}`,
        `set_inode_field ${q(e.path)} gid ${e.gid}`,
      );
    }
  }
  await runCommand('debugfs', ['-w', '-f', '-', file], { input: `${cmds.join('\n')}\n`, signal });
  // debugfs reports failed requests on stderr but exits 0: check the result instead.
  const files = entries.filter((x) => x.kind === 'file');
  for (const [i, e] of files.entries()) {
    const copy = join(scratchDir, `readback-${i}`);
    await runCommand('debugfs', ['-R', `dump ${q(e.path)} ${q(copy)}`, file], { signal });
    const [want, got] = await Promise.all([
      readFile(join(treeDir, e.path)),
      readFile(copy).catch(() => null),
    ]);
    await rm(copy, { force: true });
    if (!got || !want.equals(got)) throw new Error(`debugfs did not add ${e.path} to ${file}`);
  }
}
