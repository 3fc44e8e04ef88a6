// An npm registry, as static files for the test "internet", holding a package installed on
// this host and every package it depends on (its installed closure): what `npx -y
// <package>` in a sandbox needs, with nothing fetched from outside. Tarballs are made with
// tar from the installed directories (`package/` inside, as `npm pack` makes them).
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { runCommand } from '@aiva/node';

interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

async function manifest(dir: string): Promise<Manifest | undefined> {
  return readFile(join(dir, 'package.json'), 'utf8').then(
    (t) => JSON.parse(t) as Manifest,
    () => undefined,
  );
}

/** Where `name` resolves from `dir` by Node's rule: the nearest node_modules/<name> upwards. */
async function installedDir(name: string, from: string): Promise<string | undefined> {
  for (let d = from; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules', name);
    if (await manifest(candidate)) return candidate;
    if (dirname(d) === d) return undefined;
  }
}

/**
 * Serves `root` (an installed package's directory) and its dependency closure from `dir`
 * as registry `url`: `<name>/index.json` packuments and `<name>/-/<file>.tgz` tarballs.
 * Optional dependencies that are not installed are left out (npm skips them). Returns
 * how many packages it holds.
 */
export async function makeNpmMirror(dir: string, url: string, root: string): Promise<number> {
  const seen = new Map<string, { manifest: Manifest; dir: string }>();
  const queue = [root];
  while (queue.length) {
    const at = queue.pop() as string;
    const m = await manifest(at);
    if (!m) throw new Error(`${at} has no package.json`);
    const key = `${m.name}@${m.version}`;
    if (seen.has(key)) continue;
    seen.set(key, { manifest: m, dir: at });
    for (const [name, optional] of [
      ...Object.keys(m.dependencies ?? {}).map((n) => [n, false] as const),
      ...Object.keys(m.optionalDependencies ?? {}).map((n) => [n, true] as const),
    ]) {
      const found = await installedDir(name, at);
      if (found) queue.push(found);
      else if (!optional) throw new Error(`${m.name} depends on ${name}, which is not installed`);
    }
  }
  const packuments = new Map<
    string,
    { name: string; 'dist-tags': { latest: string }; versions: Record<string, unknown> }
  >();
  for (const { manifest: m, dir: src } of seen.values()) {
    const base = m.name.split('/').at(-1);
    const file = `${base}-${m.version}.tgz`;
    const tarballs = join(dir, m.name, '-');
    await mkdir(tarballs, { recursive: true });
    await runCommand('tar', [
      '-czf',
      join(tarballs, file),
      '--exclude=./node_modules',
      '--transform=s,^\\.,package,',
      '-C',
      src,
      '.',
    ]);
    const data = await readFile(join(tarballs, file));
    const dist = {
      tarball: `${url}/${m.name}/-/${file}`,
      shasum: createHash('sha1').update(data).digest('hex'),
      integrity: `sha512-${createHash('sha512').update(data).digest('base64')}`,
    };
    const p = packuments.get(m.name) ?? { name: m.name, 'dist-tags': { latest: m.version }, versions: {} };
    p.versions[m.version] = { ...m, dist };
    packuments.set(m.name, p);
  }
  for (const [name, p] of packuments) await writeFile(join(dir, name, 'index.json'), JSON.stringify(p));
  return seen.size;
}
