// Real packages and the indexes that serve them, made on the host for the package-step
// tests (template-packages.test.ts): a .deb in a flat apt repository, wheels in a PEP 503
// simple index, an `npm pack` tarball in an npm registry, and a git repository with two
// branches. Each `make*` writes a directory to be served over HTTP (or by git daemon).
import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { runCommand } from '@aiva/node';

/**
 * A flat apt repository (`deb [trusted=yes] <url> ./`) in `dir` with one architecture-all
 * package, `name` 1.0, whose /usr/bin/<name> prints `hello from <name>` and its arguments.
 */
export async function makeAptRepository(dir: string, work: string, name: string): Promise<void> {
  const root = join(work, name);
  await mkdir(join(root, 'DEBIAN'), { recursive: true });
  await mkdir(join(root, 'usr', 'bin'), { recursive: true });
  await writeFile(
    join(root, 'DEBIAN', 'control'),
    [
      `Package: ${name}`,
      'Version: 1.0',
      'Architecture: all',
      'Maintainer: aiva tests <tests@aiva.test>',
      `Description: prints hello (a package the aiva tests build)`,
      '',
    ].join('\n'),
  );
  await writeFile(join(root, 'usr', 'bin', name), `#!/bin/sh\necho "hello from ${name}" "$@"\n`);
  await chmod(join(root, 'usr', 'bin', name), 0o755);
  await mkdir(dir, { recursive: true });
  await runCommand('dpkg-deb', ['--root-owner-group', '--build', root, join(dir, `${name}_1.0_all.deb`)]);
  const { stdout } = await runCommand('dpkg-scanpackages', ['--multiversion', '.', '/dev/null'], {
    cwd: dir,
  });
  await writeFile(join(dir, 'Packages'), stdout);
}

/** A zip archive of `files`, stored (not compressed): all a wheel needs to be. */
function zip(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const fileName = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0); // local file header
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(fileName.length, 26);
    const entry = Buffer.alloc(46);
    entry.writeUInt32LE(0x02014b50, 0); // central directory header
    entry.writeUInt16LE(0x0314, 4); // made by: Unix, 2.0
    entry.writeUInt16LE(20, 6);
    entry.writeUInt32LE(crc, 16);
    entry.writeUInt32LE(data.length, 20);
    entry.writeUInt32LE(data.length, 24);
    entry.writeUInt16LE(fileName.length, 28);
    entry.writeUInt32LE((0o100644 << 16) >>> 0, 38); // a regular file, rw-r--r--
    entry.writeUInt32LE(offset, 42);
    locals.push(local, fileName, data);
    central.push(entry, fileName);
    offset += local.length + fileName.length + data.length;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); // end of central directory
  end.writeUInt16LE(central.length / 2, 8);
  end.writeUInt16LE(central.length / 2, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/**
 * A PEP 503 simple index in `dir` (`<url>/simple/`) with one pure-Python wheel per name,
 * version 1.0: `import <name with _ for ->` gives a module whose GREETING is
 * `hello from <name>`.
 */
export async function makePythonIndex(dir: string, names: string[]): Promise<void> {
  await mkdir(join(dir, 'packages'), { recursive: true });
  const links: string[] = [];
  for (const name of names) {
    const module = name.replaceAll('-', '_');
    const info = `${module}-1.0.dist-info`;
    const files: Record<string, string> = {
      [`${module}/__init__.py`]: `GREETING = "hello from ${name}"\n`,
      [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${name}\nVersion: 1.0\nSummary: aiva test package\n`,
      [`${info}/WHEEL`]:
        'Wheel-Version: 1.0\nGenerator: aiva-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
    };
    const digest = (s: string) => createHash('sha256').update(s).digest('base64url');
    files[`${info}/RECORD`] = [
      ...Object.entries(files).map(([p, s]) => `${p},sha256=${digest(s)},${Buffer.byteLength(s)}`),
      `${info}/RECORD,,`,
      '',
    ].join('\n');
    const wheel = `${module}-1.0-py3-none-any.whl`;
    const data = zip(files);
    await writeFile(join(dir, 'packages', wheel), data);
    const sha256 = createHash('sha256').update(data).digest('hex');
    await mkdir(join(dir, 'simple', name), { recursive: true });
    await writeFile(
      join(dir, 'simple', name, 'index.html'),
      `<!DOCTYPE html>\n<html><body>\n<a href="../../packages/${wheel}#sha256=${sha256}">${wheel}</a>\n</body></html>\n`,
    );
    links.push(`<a href="${name}/">${name}</a>`);
  }
  await writeFile(
    join(dir, 'simple', 'index.html'),
    `<!DOCTYPE html>\n<html><body>\n${links.join('\n')}\n</body></html>\n`,
  );
}

/**
 * An npm registry in `dir` for `<url>` with one package, `name` 1.0.0, made by `npm pack`:
 * `require(name).greeting` and its bin `<name>` both give `hello from <name>`.
 */
export async function makeNpmRegistry(dir: string, work: string, url: string, name: string): Promise<void> {
  const src = join(work, name);
  await mkdir(src, { recursive: true });
  const manifest = { name, version: '1.0.0', main: 'index.js', bin: { [name]: 'bin.js' }, license: 'MIT' };
  await writeFile(join(src, 'package.json'), JSON.stringify(manifest, null, 2));
  await writeFile(join(src, 'index.js'), `module.exports = { greeting: 'hello from ${name}' };\n`);
  await writeFile(join(src, 'bin.js'), "#!/usr/bin/env node\nconsole.log(require('./index.js').greeting);\n");
  const tarballs = join(dir, name, '-');
  await mkdir(tarballs, { recursive: true });
  await runCommand('npm', ['pack', '--silent', '--pack-destination', tarballs], { cwd: src });
  const file = `${name}-1.0.0.tgz`;
  const data = await readFile(join(tarballs, file));
  const dist = {
    tarball: `${url}/${name}/-/${file}`,
    shasum: createHash('sha1').update(data).digest('hex'),
    integrity: `sha512-${createHash('sha512').update(data).digest('base64')}`,
  };
  const packument = { name, 'dist-tags': { latest: '1.0.0' }, versions: { '1.0.0': { ...manifest, dist } } };
  await writeFile(join(dir, name, 'index.json'), JSON.stringify(packument));
}

/**
 * A bare git repository `<dir>/<name>.git` with branch `main` (README) and branch `feature`
 * (two commits more: README changed, feature.txt added). Returns the branches' commits.
 */
export async function makeGitRepository(
  dir: string,
  work: string,
  name: string,
): Promise<{ main: string; feature: string }> {
  const src = join(work, name);
  await mkdir(src, { recursive: true });
  const git = async (...args: string[]) =>
    (
      await runCommand('git', ['-c', 'user.name=aiva tests', '-c', 'user.email=tests@aiva.test', ...args], {
        cwd: src,
      })
    ).stdout.trim();
  await git('init', '--quiet', '--initial-branch=main');
  await writeFile(join(src, 'README'), 'main branch\n');
  await git('add', 'README');
  await git('commit', '--quiet', '-m', 'main');
  const main = await git('rev-parse', 'HEAD');
  await git('checkout', '--quiet', '-b', 'feature');
  await writeFile(join(src, 'README'), 'feature branch\n');
  await git('commit', '--quiet', '-am', 'feature: README');
  await writeFile(join(src, 'feature.txt'), 'only on the feature branch\n');
  await git('add', 'feature.txt');
  await git('commit', '--quiet', '-m', 'feature: feature.txt');
  const feature = await git('rev-parse', 'HEAD');
  await runCommand('git', ['clone', '--quiet', '--bare', src, join(dir, `${name}.git`)]);
  return { main, feature };
}
