import { isAbsolute, join, normalize } from 'node:path';
import type { GuestUser } from './users.js';

export class InvalidPathError extends Error {}

/**
 * A path of a request made absolute: `~` and `~/x` expand to the user's home, relative
 * paths start at the home, an empty path is `emptyPath` (the home unless given), and
 * `.`/`..` are resolved.
 */
export function resolveUserPath(path: string, user: GuestUser, emptyPath?: string): string {
  if (path.includes('\0')) throw new InvalidPathError('path contains a NUL byte');
  let p = path;
  if (p === '') p = emptyPath ?? user.home;
  else if (p === '~') p = user.home;
  else if (p.startsWith('~/')) p = join(user.home, p.slice(2));
  else if (p.startsWith('~'))
    throw new InvalidPathError(`cannot expand '${path}': only ~ and ~/ are supported`);
  if (!isAbsolute(p)) p = join(user.home, p);
  const out = normalize(p);
  return out.length > 1 && out.endsWith('/') ? out.slice(0, -1) : out;
}
