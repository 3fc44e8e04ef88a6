import type { BigIntStats } from 'node:fs';
import { lstat, realpath, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { filesystem as fsp } from '@aiva/protocol';
import { create } from '@bufbuild/protobuf';
import type { UserDatabase } from '../users.js';
import type { MetadataStore } from './xattr.js';

const S_IFMT = 0o170000;
const TYPE_BITS: [number, string][] = [
  [0o040000, 'd'],
  [0o120000, 'L'],
  [0o060000, 'D'],
  [0o020000, 'D'],
  [0o010000, 'p'],
  [0o140000, 'S'],
];

/** `ls`-style permissions exactly as Go's os.FileMode.String() writes them (E2B's format). */
export function goModeString(mode: number): string {
  const fmt = mode & S_IFMT;
  let out = '';
  // Go's order: d a l T L D p S u g c t ?
  for (const [bits, letter] of TYPE_BITS) if (fmt === bits && !out.includes(letter)) out += letter;
  if (mode & 0o4000) out += 'u';
  if (mode & 0o2000) out += 'g';
  if (fmt === 0o020000) out += 'c';
  if (mode & 0o1000) out += 't';
  if (out === '') out = '-';
  const rwx = 'rwxrwxrwx';
  for (let i = 0; i < 9; i++) out += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return out;
}

function fileType(st: {
  isFile(): boolean;
  isDirectory(): boolean;
  isSymbolicLink(): boolean;
}): fsp.FileType {
  if (st.isFile()) return fsp.FileType.FILE;
  if (st.isDirectory()) return fsp.FileType.DIRECTORY;
  if (st.isSymbolicLink()) return fsp.FileType.SYMLINK;
  return fsp.FileType.UNSPECIFIED;
}

/**
 * Entry info of `path` from lstat: a symlink reports its absolute target and takes its
 * type and permission bits from the target; `permissions` is the link's own mode string.
 */
export async function entryInfo(
  path: string,
  users: UserDatabase,
  lst?: BigIntStats,
  metadata?: Record<string, string>,
): Promise<fsp.EntryInfo> {
  const st = lst ?? (await lstat(path, { bigint: true }));
  let type = fileType(st);
  let mode = Number(st.mode) & 0o777;
  let symlinkTarget: string | undefined;
  if (st.isSymbolicLink()) {
    symlinkTarget = await realpath(path).catch(() => path);
    const target = await stat(path).catch(() => undefined);
    type = target ? fileType(target) : fsp.FileType.UNSPECIFIED;
    mode = target ? target.mode & 0o777 : 0;
  }
  return create(fsp.EntryInfoSchema, {
    name: basename(path),
    type,
    path,
    size: st.size,
    mode,
    permissions: goModeString(Number(st.mode)),
    owner: users.userName(Number(st.uid)),
    group: users.groupName(Number(st.gid)),
    modifiedTime: { seconds: st.mtimeNs / 1_000_000_000n, nanos: Number(st.mtimeNs % 1_000_000_000n) },
    symlinkTarget,
    metadata: metadata ?? {},
  });
}

/** Entry infos with their metadata (one helper run for all of them). */
export async function entryInfosWithMetadata(
  items: { path: string; lst?: BigIntStats }[],
  users: UserDatabase,
  metadata: MetadataStore,
): Promise<fsp.EntryInfo[]> {
  const md = items.length > 0 ? await metadata.read(items.map((i) => i.path)) : [];
  return Promise.all(items.map((i, k) => entryInfo(i.path, users, i.lst, md[k])));
}
