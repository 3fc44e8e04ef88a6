import { chmod, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

/** A directory that users other than its owner and group cannot search (no o+x). */
export interface Unsearchable {
  dir: string;
  mode: number;
}

/** The first directory from `dir` up to `/` that other users cannot search, if any. */
export async function firstUnsearchable(dir: string): Promise<Unsearchable | undefined> {
  for (let d = resolve(dir); ; d = dirname(d)) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) return { dir: d, mode: mode & 0o7777 };
    if (d === '/') return undefined;
  }
}

export const describeUnsearchable = (u: Unsearchable) =>
  `${u.dir} (mode ${u.mode.toString(8).padStart(4, '0')}) is not searchable by other users`;

/**
 * Lets every user search aiva's own directories `own` (adds o+x, never read), and checks
 * that the directories above the first of them are searchable already: a container in a
 * user namespace reaches its root filesystem as an unprivileged host user. A directory
 * aiva does not own (/root, a home) is never changed; the error says what to do.
 */
export async function letOtherIdsSearch(own: readonly string[]): Promise<void> {
  const [top] = own;
  if (top === undefined) return;
  const blocked = await firstUnsearchable(dirname(resolve(top)));
  if (blocked) {
    throw new Error(
      `sandboxes in user namespaces cannot reach the data directory ${top}: ${describeUnsearchable(blocked)}. ` +
        `Run \`chmod o+x ${blocked.dir}\`, put AIVA_HOME where every user can search (the default is /var/lib/aiva), ` +
        'or turn user namespaces off (AIVA_USER_NAMESPACES=off)',
    );
  }
  for (const d of own) {
    const { mode } = await stat(d);
    if ((mode & 0o001) === 0) await chmod(d, (mode & 0o7777) | 0o001);
  }
}
