import { readFile } from 'node:fs/promises';
import { runCommand } from './command.js';

/** Decodes the octal escapes (\040 for a space …) of /proc/mounts fields. */
const decodeMountField = (s: string) =>
  s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8)));

/** Mount points at or under `dir`, deepest first. */
export async function mountedUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mounts', 'utf8');
  return text
    .split('\n')
    .map((l) => decodeMountField(l.split(' ')[1] ?? ''))
    .filter((m) => m === dir || m.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts everything at or under `dir`, deepest first. */
export async function unmountAll(dir: string): Promise<void> {
  for (const m of await mountedUnder(dir)) {
    await runCommand('umount', [m]).catch(async (e) => {
      // Still mounted after a failure means something holds it: report that.
      if ((await mountedUnder(m)).includes(m)) throw e;
    });
  }
}

/**
 * overlayfs's `lowerdir` option for `layers` (top first), and the directory to mount
 * from: layers under one directory are named relative to it, so that a template of
 * many layers fits the mount options' one page (about 55 layers of a content-addressed
 * store instead of about 35).
 */
export function overlayLowerdir(layers: string[]): { lowerdir: string; cwd?: string } {
  const parent = (p: string) => p.slice(0, p.lastIndexOf('/'));
  const root = layers.length > 0 ? parent(parent(layers[0] as string)) : '';
  if (root && layers.every((l) => parent(parent(l)) === root))
    return { lowerdir: layers.map((l) => l.slice(root.length + 1)).join(':'), cwd: root };
  return { lowerdir: layers.join(':') };
}
