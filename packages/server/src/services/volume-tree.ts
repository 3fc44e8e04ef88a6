import { randomBytes } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import {
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  readdir,
  readlink,
  rename,
  rmdir,
  unlink,
} from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ConflictError, InvalidRequestError, NotFoundError, StorageFullError } from './errors.js';

const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Owner of what the content API makes when the call names none: E2B's base template's `user`. */
export const DEFAULT_OWNER = 1000;

/** E2B's `VolumeEntryStat`. */
export interface VolumeEntry {
  name: string;
  /** From the volume's root, with a leading `/`. */
  path: string;
  type: 'file' | 'directory' | 'symlink' | 'unknown';
  size: number;
  /** Permission bits (`0o644`). */
  mode: number;
  uid: number;
  gid: number;
  atime: string;
  mtime: string;
  ctime: string;
  target?: string;
}

export interface Ownership {
  uid?: number;
  gid?: number;
  mode?: number;
}

/** A directory's handle and a name in it: where an operation acts. */
interface Place {
  dir: FileHandle;
  name: string;
  /** The path from the volume's root (`/a/b`). */
  path: string;
}

/** A path of `dir`'s, through its descriptor: the kernel resolves `name` in that very directory. */
const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;

const code = (e: unknown) => (e as NodeJS.ErrnoException).code;
/** Writes all of `b` at the file's position: a write that finds the volume nearly full writes only part of it, the next is ENOSPC. */
async function writeAll(file: FileHandle, b: Buffer): Promise<void> {
  for (let at = 0; at < b.length; ) {
    const { bytesWritten } = await file.write(b, at);
    if (bytesWritten === 0) throw new Error('a write wrote nothing');
    at += bytesWritten;
  }
}
/** The volume (its filesystem) has no room left. */
const isFull = (e: unknown) => code(e) === 'ENOSPC' || code(e) === 'EDQUOT';
const symlinkError = () => Object.assign(new Error('a symlink'), { code: 'ELOOP' });

/**
 * The files of one volume, as the content API (run by the host's root) touches them. A
 * volume is shared with sandboxes that may put symlinks, FIFOs or device nodes in it, or
 * swap a directory for a symlink while a call runs: so every path is walked one component
 * at a time from the root through directory descriptors opened with O_NOFOLLOW, and every
 * operation acts on a name inside such a descriptor (`/proc/self/fd/N/name`). A symlink is
 * never followed (a path through one is a 400), and only regular files are read or written.
 */
export class VolumeTree {
  constructor(readonly root: string) {}

  /** `a/b`, `/a/b/` → ['a', 'b']; the root is []. No `..`, `.` or NUL. */
  static parts(path: string): string[] {
    if (typeof path !== 'string' || path.includes('\0'))
      throw new InvalidRequestError('path must be a string without NUL');
    const parts = path.split('/').filter((p) => p !== '' && p !== '.');
    if (parts.includes('..')) throw new InvalidRequestError(`path ${path} must not contain ".."`);
    if (parts.some((p) => Buffer.byteLength(p) > 255))
      throw new InvalidRequestError(`path ${path} has a name longer than 255 bytes`);
    return parts;
  }

  /** Opens the directory `parts` names, walking from the root; with `create`, makes what is missing. */
  private async openDir(parts: string[], create?: Ownership): Promise<FileHandle> {
    let dir = await open(this.root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW).catch((e) => {
      // Destroyed meanwhile.
      throw code(e) === 'ENOENT' ? new NotFoundError('the volume no longer exists') : e;
    });
    const walked: string[] = [];
    try {
      for (const name of parts) {
        walked.push(name);
        let next: FileHandle;
        try {
          next = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
        } catch (e) {
          if (code(e) === 'ENOENT' && create) {
            await this.makeDirAt(dir, name, create);
            next = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
          } else {
            // O_DIRECTORY with O_NOFOLLOW answers ENOTDIR for a symlink: say which it is.
            const link =
              code(e) === 'ENOTDIR' ? await lstat(at(dir, name)).catch(() => undefined) : undefined;
            throw this.explain(
              link?.isSymbolicLink() ? symlinkError() : e,
              `/${walked.join('/')}`,
              'a directory',
            );
          }
        }
        await dir.close();
        dir = next;
      }
      return dir;
    } catch (e) {
      await dir.close();
      throw e;
    }
  }

  private async makeDirAt(dir: FileHandle, name: string, o: Ownership): Promise<void> {
    await mkdir(at(dir, name), { mode: o.mode ?? 0o755 });
    const made = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      await made.chown(o.uid ?? DEFAULT_OWNER, o.gid ?? DEFAULT_OWNER);
      if (o.mode !== undefined) await made.chmod(o.mode);
    } finally {
      await made.close();
    }
  }

  /** A service error for a failed walk or open of `path`. */
  private explain(e: unknown, path: string, what: string): Error {
    switch (code(e)) {
      case 'ENOENT':
        return new NotFoundError(`path ${path} not found`);
      case 'ELOOP':
        return new InvalidRequestError(`path ${path} is a symlink: the content API does not follow symlinks`);
      case 'ENOTDIR':
        return new InvalidRequestError(`path ${path} is not ${what}`);
      case 'EEXIST':
        return new ConflictError(`path ${path} already exists`);
      case 'ENAMETOOLONG':
        return new InvalidRequestError(`path ${path} is too long`);
      case 'ENOSPC':
      case 'EDQUOT':
        return new StorageFullError(
          `the volume is full: no room for ${path} (its size bounds it; remove files to free room)`,
        );
      default:
        return e as Error;
    }
  }

  /** The parent directory of `path`, opened, and the last name (the root itself has no place). */
  private async place(path: string, createParents?: Ownership): Promise<Place> {
    const parts = VolumeTree.parts(path);
    const name = parts.pop();
    if (name === undefined)
      throw new InvalidRequestError('the volume root itself cannot be changed this way');
    const dir = await this.openDir(parts, createParents);
    return { dir, name, path: `/${[...parts, name].join('/')}` };
  }

  private async entryAt(dir: FileHandle, name: string, path: string): Promise<VolumeEntry> {
    const s = await lstat(at(dir, name)).catch((e) => {
      throw this.explain(e, path, 'a directory');
    });
    return entryOf(
      name,
      path,
      s,
      s.isSymbolicLink() ? await readlink(at(dir, name)).catch(() => '') : undefined,
    );
  }

  async info(path: string): Promise<VolumeEntry> {
    const parts = VolumeTree.parts(path);
    if (parts.length === 0) {
      const dir = await this.openDir([]);
      try {
        return entryOf('', '/', await dir.stat());
      } finally {
        await dir.close();
      }
    }
    const p = await this.place(path);
    try {
      return await this.entryAt(p.dir, p.name, p.path);
    } finally {
      await p.dir.close();
    }
  }

  /** The entries under the directory `path`, `depth` levels deep (1: its own). */
  async list(path: string, depth = 1): Promise<VolumeEntry[]> {
    if (!Number.isInteger(depth) || depth < 1 || depth > 32)
      throw new InvalidRequestError('depth must be a whole number from 1 to 32');
    const parts = VolumeTree.parts(path);
    const dir = await this.openDir(parts);
    const out: VolumeEntry[] = [];
    try {
      await this.listInto(dir, parts.length ? `/${parts.join('/')}` : '', depth, out);
    } finally {
      await dir.close();
    }
    return out;
  }

  private async listInto(dir: FileHandle, prefix: string, depth: number, out: VolumeEntry[]): Promise<void> {
    for (const name of (await readdir(at(dir, '.'))).sort()) {
      const entry = await this.entryAt(dir, name, `${prefix}/${name}`).catch(() => undefined);
      if (!entry) continue; // gone meanwhile
      out.push(entry);
      if (entry.type !== 'directory' || depth <= 1) continue;
      const sub = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK).catch(
        () => undefined,
      );
      if (!sub) continue;
      try {
        await this.listInto(sub, entry.path, depth - 1, out);
      } finally {
        await sub.close();
      }
    }
  }

  /** Makes the directory `path`; with `parents`, the missing ones above it too (and an existing one is fine). */
  async makeDir(path: string, o: Ownership & { parents?: boolean }): Promise<VolumeEntry> {
    const p = await this.place(path, o.parents ? { uid: o.uid, gid: o.gid } : undefined);
    try {
      try {
        await this.makeDirAt(p.dir, p.name, o);
      } catch (e) {
        const exists = code(e) === 'EEXIST';
        if (!exists || !o.parents) throw this.explain(e, p.path, 'a directory');
        const entry = await this.entryAt(p.dir, p.name, p.path);
        if (entry.type !== 'directory')
          throw new ConflictError(`path ${p.path} exists and is not a directory`);
      }
      return await this.entryAt(p.dir, p.name, p.path);
    } finally {
      await p.dir.close();
    }
  }

  /** Opens the regular file `path` for reading (anything else is a 400). */
  async openFile(path: string): Promise<{ stream: Readable; size: number }> {
    const p = await this.place(path);
    try {
      const before = await lstat(at(p.dir, p.name)).catch((e) => {
        throw this.explain(e, p.path, 'a directory');
      });
      if (!before.isFile()) throw new InvalidRequestError(`path ${p.path} is not a regular file`);
      const file = await open(at(p.dir, p.name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch((e) => {
        throw this.explain(e, p.path, 'a directory');
      });
      const s = await file.stat();
      if (!s.isFile()) {
        await file.close();
        throw new InvalidRequestError(`path ${p.path} is not a regular file`);
      }
      return { stream: file.createReadStream(), size: s.size };
    } finally {
      await p.dir.close();
    }
  }

  /**
   * Writes `body` to the regular file `path`: a new file (its parent must exist), or an
   * existing one with `overwrite` (a 409 without). The bytes go to a temporary file in
   * the same directory that then takes the name at once (a reader sees the old file or
   * the new one, never half of it). When the volume is full the rest of the body is read
   * and dropped (so that the client hears why), the temporary file goes, and a
   * `StorageFullError` is thrown.
   */
  async writeFile(
    path: string,
    body: Readable,
    o: Ownership & { overwrite?: boolean },
  ): Promise<VolumeEntry> {
    const p = await this.place(path);
    const temp = `.aiva-upload-${randomBytes(8).toString('hex')}`;
    let placed = false;
    try {
      const existing = await lstat(at(p.dir, p.name)).catch(() => undefined);
      if (existing && !existing.isFile())
        throw new InvalidRequestError(`path ${p.path} is not a regular file`);
      if (existing && !o.overwrite)
        throw new ConflictError(`path ${p.path} already exists (force: true overwrites it)`);
      const file = await open(at(p.dir, temp), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
      try {
        // A new file is the sandbox user's; an overwritten one keeps its owner and mode.
        await file.chown(o.uid ?? existing?.uid ?? DEFAULT_OWNER, o.gid ?? existing?.gid ?? DEFAULT_OWNER);
        await file.chmod(o.mode ?? (existing ? existing.mode & 0o7777 : 0o644));
        let full: unknown;
        for await (const chunk of body) {
          const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
          if (full) continue;
          await writeAll(file, b).catch((e: unknown) => {
            if (!isFull(e)) throw e;
            full = e;
          });
        }
        if (full) throw full;
      } finally {
        await file.close();
      }
      // rename replaces what has the name (a file, or whatever a sandbox put there since);
      // link refuses an existing name, so a new file never replaces one made meanwhile.
      if (o.overwrite) await rename(at(p.dir, temp), at(p.dir, p.name));
      else await link(at(p.dir, temp), at(p.dir, p.name));
      placed = true;
      return await this.entryAt(p.dir, p.name, p.path);
    } catch (e) {
      throw this.explain(e, p.path, 'a directory');
    } finally {
      if (!placed || !o.overwrite) await unlink(at(p.dir, temp)).catch(() => {});
      await p.dir.close();
    }
  }

  /** Changes the owner or mode of `path` (not of a symlink: 400). */
  async updateMetadata(path: string, o: Ownership): Promise<VolumeEntry> {
    const parts = VolumeTree.parts(path);
    const p = parts.length ? await this.place(path) : undefined;
    const target = p
      ? await open(at(p.dir, p.name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch(async (e) => {
          // Its directory is closed here too: an open descriptor would keep the volume busy.
          await p.dir.close();
          throw this.explain(e, p.path, 'a directory');
        })
      : await this.openDir([]);
    try {
      const s = await target.stat();
      if (!s.isFile() && !s.isDirectory())
        throw new InvalidRequestError(`path ${p?.path ?? '/'} is not a regular file or a directory`);
      if (o.uid !== undefined || o.gid !== undefined) await target.chown(o.uid ?? s.uid, o.gid ?? s.gid);
      if (o.mode !== undefined) await target.chmod(o.mode);
      return entryOf(p?.name ?? '', p?.path ?? '/', await target.stat());
    } finally {
      await target.close();
      await p?.dir.close();
    }
  }

  /** Removes `path`: a file or symlink, or a directory with everything in it. */
  async remove(path: string): Promise<void> {
    const p = await this.place(path);
    try {
      const s = await lstat(at(p.dir, p.name)).catch((e) => {
        throw this.explain(e, p.path, 'a directory');
      });
      if (s.isDirectory()) await removeTree(p.dir, p.name);
      else await unlink(at(p.dir, p.name));
    } finally {
      await p.dir.close();
    }
  }

  /** The bytes of the regular files in the volume (symlinks not followed). */
  async bytes(): Promise<number> {
    const dir = await this.openDir([]);
    try {
      return await sizeOf(dir);
    } finally {
      await dir.close();
    }
  }
}

function entryOf(name: string, path: string, s: Stats, target?: string): VolumeEntry {
  const type = s.isFile()
    ? 'file'
    : s.isDirectory()
      ? 'directory'
      : s.isSymbolicLink()
        ? 'symlink'
        : 'unknown';
  return {
    name,
    path,
    type,
    size: s.size,
    mode: s.mode & 0o7777,
    uid: s.uid,
    gid: s.gid,
    atime: s.atime.toISOString(),
    mtime: s.mtime.toISOString(),
    ctime: s.ctime.toISOString(),
    ...(target !== undefined ? { target } : {}),
  };
}

/** Removes the directory `name` in `parent` and what it holds, never following a symlink. */
async function removeTree(parent: FileHandle, name: string): Promise<void> {
  const dir = await open(at(parent, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK);
  try {
    for (const child of await readdir(at(dir, '.'))) {
      const s = await lstat(at(dir, child)).catch(() => undefined);
      if (!s) continue;
      if (s.isDirectory()) await removeTree(dir, child);
      else await unlink(at(dir, child));
    }
  } finally {
    await dir.close();
  }
  await rmdir(at(parent, name));
}

async function sizeOf(dir: FileHandle): Promise<number> {
  let total = 0;
  for (const name of await readdir(at(dir, '.'))) {
    const s = await lstat(at(dir, name)).catch(() => undefined);
    if (!s) continue;
    if (s.isFile()) total += s.size;
    else if (s.isDirectory()) {
      const sub = await open(at(dir, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK).catch(
        () => undefined,
      );
      if (!sub) continue;
      try {
        total += await sizeOf(sub);
      } finally {
        await sub.close();
      }
    }
  }
  return total;
}
