import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { shellQuote } from '../command-line.js';

/**
 * One entry of a tree `aiva data` moves: a regular file (with its size and sha256), a
 * symbolic link (its target, as written: never followed) or a directory. Paths are
 * relative to the tree's root, `/`-separated, without `./`.
 */
export type TreeEntry =
  | { type: 'file'; path: string; mode: number; size: number; sha256: string }
  | { type: 'link'; path: string; target: string }
  | { type: 'dir'; path: string; mode: number };

/** A tree by path; `skipped` are what it holds that is none of those (sockets, fifos, devices). */
export interface Tree {
  entries: Map<string, TreeEntry>;
  skipped: string[];
}

/** Where environments keep their data: relative remote paths are under it. */
export const DATA_ROOT = '/data';

/**
 * A remote path as given on the command line, made absolute (relative ones are under
 * /data); any `..` segment is refused, so a path cannot climb out of where it says.
 */
export function remotePath(given: string): string {
  if (given === '') throw new Error('the remote path is empty');
  if (given.includes('\0')) throw new Error('the remote path has a NUL character');
  if (given.split('/').includes('..'))
    throw new Error(`the remote path ${given} has a ".." segment: give a path without one`);
  const path = posix.normalize(posix.isAbsolute(given) ? given : posix.join(DATA_ROOT, given));
  return path.length > 1 ? path.replace(/\/+$/, '') : path;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * The local tree under `root` (a directory); a missing root is an empty tree when
 * `missingIsEmpty` (a pull's destination), an error otherwise.
 */
export async function localTree(root: string, missingIsEmpty = false): Promise<Tree> {
  const tree: Tree = { entries: new Map(), skipped: [] };
  const top = await lstat(root).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT' && missingIsEmpty) return undefined;
    if (e.code === 'ENOENT') throw new Error(`${root} does not exist`);
    throw e;
  });
  if (!top) return tree;
  if (!top.isDirectory()) throw new Error(`${root} is not a directory (aiva data moves directory trees)`);
  const walk = async (rel: string): Promise<void> => {
    const dir = rel ? posix.join(root, rel) : root;
    for (const dirent of await readdir(dir, { withFileTypes: true })) {
      const path = rel ? `${rel}/${dirent.name}` : dirent.name;
      const full = posix.join(root, path);
      const st = await lstat(full);
      if (st.isSymbolicLink()) tree.entries.set(path, { type: 'link', path, target: await readlink(full) });
      else if (st.isDirectory()) {
        tree.entries.set(path, { type: 'dir', path, mode: st.mode & 0o7777 });
        await walk(path);
      } else if (st.isFile())
        tree.entries.set(path, {
          type: 'file',
          path,
          mode: st.mode & 0o7777,
          size: st.size,
          sha256: await sha256Of(full),
        });
      else tree.skipped.push(path);
    }
  };
  await walk('');
  return tree;
}

/** Ends the listing's entries and starts its hashes (never a one-letter type of find's). */
const HASHES = 'HASHES';

/**
 * The shell script that lists the remote tree at `root` into `out`: with GNU find, each
 * entry as five NUL-ended fields (type letter, octal mode, size, link target, path), then
 * `HASHES`, then sha256sum's `-z` lines (names unescaped) for the regular files. A root
 * that is not there lists nothing; one that is not a directory fails, saying so.
 */
export function remoteListScript(root: string, out: string): string {
  const r = shellQuote(root);
  const o = shellQuote(out);
  return [
    `if [ ! -e ${r} ] && [ ! -L ${r} ]; then : > ${o}; exit 0; fi`,
    `if [ ! -d ${r} ]; then echo ${r}" is not a directory" >&2; exit 3; fi`,
    `cd -- ${r} || exit 4`,
    `{ find . -mindepth 1 -printf '%y\\0%m\\0%s\\0%l\\0%P\\0' && printf '${HASHES}\\0' &&` +
      ` find . -type f -print0 | xargs -0 -r sha256sum -z --; } > ${o}`,
  ].join('\n');
}

/** The tree `remoteListScript`'s output describes. */
export function parseRemoteList(text: string): Tree {
  const tree: Tree = { entries: new Map(), skipped: [] };
  if (text === '') return tree;
  const fields = text.split('\0');
  const sizes = new Map<string, { mode: number; size: number }>();
  let i = 0;
  for (; i < fields.length && fields[i] !== HASHES; i += 5) {
    const [type, mode, size, target, path] = fields.slice(i, i + 5) as [
      string,
      string,
      string,
      string,
      string,
    ];
    if (path === undefined) throw new Error('the remote listing is cut short');
    if (type === 'f') sizes.set(path, { mode: Number.parseInt(mode, 8), size: Number(size) });
    else if (type === 'd') tree.entries.set(path, { type: 'dir', path, mode: Number.parseInt(mode, 8) });
    else if (type === 'l') tree.entries.set(path, { type: 'link', path, target });
    else tree.skipped.push(path);
  }
  if (fields[i] !== HASHES) throw new Error('the remote listing has no hashes');
  for (const line of fields.slice(i + 1)) {
    if (line === '') continue;
    // `<64 hex><space><space or *>./<path>`
    const sha256 = line.slice(0, 64);
    const path = line.slice(66).replace(/^\.\//, '');
    const meta = sizes.get(path);
    if (!meta) continue; // it changed between the two finds: treat it as not there
    tree.entries.set(path, { type: 'file', path, sha256, ...meta });
  }
  return tree;
}
