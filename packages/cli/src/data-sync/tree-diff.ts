import type { Tree, TreeEntry } from './tree.js';

/**
 * What makes a destination tree match a source tree's entries:
 * - `send`: the entries to copy over, parents before children (files and links that are
 *   new or differ in content, mode or target; directories that are new or differ in mode);
 * - `clear`: destination paths in the way of what is sent (a directory where a file goes,
 *   or the other way round), removed first;
 * - `remove` (a sync only): destination paths the source does not have, topmost only.
 * Counts are of files and links (directories follow them): `added` of `send` are new.
 */
export interface TreePlan {
  send: TreeEntry[];
  clear: string[];
  remove: string[];
  sent: number;
  added: number;
  removed: number;
  unchanged: number;
  /** Bytes of the files sent. */
  bytes: number;
}

const isLeaf = (e: TreeEntry) => e.type !== 'dir';

function same(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type === 'file' && b.type === 'file')
    return a.size === b.size && a.sha256 === b.sha256 && a.mode === b.mode;
  if (a.type === 'link' && b.type === 'link') return a.target === b.target;
  if (a.type === 'dir' && b.type === 'dir') return a.mode === b.mode;
  return false;
}

/** Byte order of paths, which puts a directory before everything under it. */
const byPath = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** Is `path` `dir` or under it? */
const within = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);

/** The plan that makes `dest` hold `source`; with `deleteExtra`, also nothing else. */
export function planTransfer(source: Tree, dest: Tree, deleteExtra: boolean): TreePlan {
  const plan: TreePlan = {
    send: [],
    clear: [],
    remove: [],
    sent: 0,
    added: 0,
    removed: 0,
    unchanged: 0,
    bytes: 0,
  };
  for (const path of [...source.entries.keys()].sort(byPath)) {
    const s = source.entries.get(path) as TreeEntry;
    const d = dest.entries.get(path);
    if (d && same(s, d)) {
      if (isLeaf(s)) plan.unchanged++;
      continue;
    }
    // A directory only changing its mode keeps what is in it; anything else of another
    // type is cleared away first.
    if (d && d.type !== s.type) plan.clear.push(path);
    plan.send.push(s);
    if (isLeaf(s)) {
      plan.sent++;
      if (!d || d.type !== s.type) plan.added++;
      if (s.type === 'file') plan.bytes += s.size;
    }
  }
  if (deleteExtra) {
    let under: string | undefined;
    for (const path of [...dest.entries.keys()].sort(byPath)) {
      const d = dest.entries.get(path) as TreeEntry;
      if (source.entries.has(path)) continue;
      if (isLeaf(d)) plan.removed++;
      if (under !== undefined && within(path, under)) continue;
      plan.remove.push(path);
      if (d.type === 'dir') under = path;
    }
  }
  return plan;
}
