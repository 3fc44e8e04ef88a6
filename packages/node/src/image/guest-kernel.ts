import { spawn } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { runCommand } from '../host/command.js';
import type { BuildReporter } from './build-reporter.js';
import type { KernelRecipe } from './recipe.js';

export interface KernelInfo {
  /** Kernel release, e.g. 6.1.0-56-cloud-amd64. */
  release: string;
  /** The Debian packages (name_version) it was made from. */
  debs: string[];
  /** Module files in the initramfs, in load order. */
  modules: string[];
}

const apt = (args: string[], cwd: string, signal?: AbortSignal) =>
  runCommand('apt-get', ['-q', '-o', 'APT::Sandbox::User=root', ...args], { cwd, signal });

/** Downloads `pkg` into `dir` and returns the .deb's path. */
async function download(pkg: string, dir: string, signal?: AbortSignal): Promise<string> {
  const before = new Set(await readdir(dir));
  try {
    await apt(['download', pkg], dir, signal);
  } catch (e) {
    const msg = (e as Error).message;
    const hint = /Unable to locate|has no installation candidate/.test(msg)
      ? ' (is the package name right, and has `apt-get update` run?)'
      : '';
    throw new Error(`could not download Debian package ${pkg}${hint}: ${msg}`);
  }
  const added = (await readdir(dir)).filter((f) => f.endsWith('.deb') && !before.has(f));
  if (added.length !== 1 || !added[0])
    throw new Error(`apt-get download ${pkg} produced ${added.join(', ') || 'nothing'}`);
  return join(dir, added[0]);
}

const debField = async (deb: string, field: string) =>
  (await runCommand('dpkg-deb', ['-f', deb, field])).stdout.trim();

/**
 * Fetches the kernel package named by the recipe, following a metapackage's dependency
 * to the package that holds /boot/vmlinuz-*, and unpacks it into `into`.
 */
async function fetchKernel(
  pkg: string,
  debs: string,
  into: string,
  signal?: AbortSignal,
): Promise<{ release: string; debs: string[] }> {
  const fetched: string[] = [];
  let name = pkg;
  for (let depth = 0; depth < 4; depth++) {
    const deb = await download(name, debs, signal);
    fetched.push(`${name}_${await debField(deb, 'Version')}`);
    const listing = (await runCommand('dpkg-deb', ['-c', deb])).stdout;
    const vmlinuz = /\.\/boot\/vmlinuz-(\S+)/.exec(listing);
    if (vmlinuz?.[1]) {
      await runCommand('dpkg-deb', ['-x', deb, into], { signal });
      return { release: vmlinuz[1], debs: fetched };
    }
    const next = /(?:^|[\s,])(linux-image-[^\s,(]+)/.exec(await debField(deb, 'Depends'));
    if (!next?.[1]) throw new Error(`${name} holds no /boot/vmlinuz-* and depends on no linux-image package`);
    name = next[1];
  }
  throw new Error(`${pkg}: too many metapackages before a kernel`);
}

/** Module files for `names` with their dependencies first, from a modules.dep text. */
export function moduleLoadOrder(modulesDep: string, names: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const [file, rest] = line.split(':');
    if (!file || rest === undefined) continue;
    deps.set(file, rest.trim().split(/\s+/).filter(Boolean));
    byName.set(
      basename(file)
        .replace(/\.ko(\.\w+)?$/, '')
        .replaceAll('-', '_'),
      file,
    );
  }
  const order: string[] = [];
  const visit = (file: string, path: string[]) => {
    if (order.includes(file)) return;
    if (path.includes(file)) throw new Error(`module dependency cycle: ${[...path, file].join(' → ')}`);
    for (const d of deps.get(file) ?? []) visit(d, [...path, file]);
    order.push(file);
  };
  for (const n of names) {
    const file = byName.get(n.replaceAll('-', '_'));
    if (!file) throw new Error(`kernel module ${n} is not in this kernel (is it built in?)`);
    visit(file, []);
  }
  const compressed = order.filter((f) => !f.endsWith('.ko'));
  if (compressed.length > 0)
    throw new Error(`compressed modules are not supported: ${compressed.join(', ')}`);
  return order;
}

async function listTree(root: string, dir = root): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(relative(root, p));
    if (e.isDirectory()) out.push(...(await listTree(root, p)));
  }
  return out;
}

/** Compressions a bzImage payload may use: magic bytes and the tool that inflates them. */
const PAYLOAD_FORMATS = [
  { magic: Buffer.from([0x1f, 0x8b, 0x08]), tool: ['gzip', '-dc'] },
  { magic: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), tool: ['xz', '-dc'] },
  { magic: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), tool: ['zstd', '-dcq'] },
  { magic: Buffer.from([0x02, 0x21, 0x4c, 0x18]), tool: ['lz4', '-dc'] },
  { magic: Buffer.from('BZh'), tool: ['bzip2', '-dc'] },
  { magic: Buffer.from([0x5d, 0x00, 0x00]), tool: ['lzma', '-dc'] },
];

/**
 * Extracts the uncompressed ELF kernel (vmlinux) from a bzImage, which Firecracker needs
 * on x86_64: tries each compression magic found in the image and keeps the first output
 * that is an ELF file. The tools complain about the bytes after the payload; the output
 * is what counts.
 */
export async function extractVmlinux(bzImage: string, out: string): Promise<void> {
  const image = await readFile(bzImage);
  const candidates = PAYLOAD_FORMATS.flatMap((f) => {
    const at = image.indexOf(f.magic);
    return at >= 0 ? [{ ...f, at }] : [];
  }).sort((a, b) => a.at - b.at);
  for (const c of candidates) {
    const [cmd, ...args] = c.tool;
    const child = spawn(cmd ?? 'false', args, { stdio: ['pipe', 'pipe', 'ignore'] });
    child.on('error', () => {});
    child.stdin.on('error', () => {});
    child.stdin.end(image.subarray(c.at));
    await pipeline(child.stdout, createWriteStream(out)).catch(() => {});
    const head = await readFile(out).then((b) => b.subarray(0, 4));
    if (head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return;
  }
  throw new Error(`no ELF kernel found inside ${bzImage}`);
}

/** Packs `dir` as a gzip-compressed newc cpio archive (an initramfs), owned by root. */
async function packInitramfs(dir: string, out: string, signal?: AbortSignal): Promise<void> {
  const files = await listTree(dir);
  const cpio = spawn('cpio', ['--quiet', '-o', '-H', 'newc', '-R', '0:0'], {
    cwd: dir,
    stdio: ['pipe', 'pipe', 'inherit'],
    signal,
  });
  cpio.stdin.end(`${files.join('\n')}\n`);
  const exited = new Promise<void>((resolve, reject) => {
    cpio.on('error', reject);
    cpio.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cpio exited with code ${code}`))));
  });
  await Promise.all([pipeline(cpio.stdout, createGzip({ level: 6 }), createWriteStream(out)), exited]);
}

/**
 * Builds the microVM boot artefacts into `out`: Debian's kernel (`vmlinuz`, and `vmlinux`
 * as an uncompressed ELF for Firecracker) and an
 * initramfs (`initrd.img`) holding busybox, the recipe's modules in dependency order and
 * `initScript` as /init.
 */
export async function buildGuestKernel(
  recipe: KernelRecipe,
  initScript: string,
  out: string,
  work: string,
  reporter: BuildReporter,
  stepId: string,
  signal?: AbortSignal,
): Promise<KernelInfo> {
  const debs = join(work, 'debs');
  const tree = join(work, 'kernel');
  const bb = join(work, 'busybox');
  const stage = join(work, 'initramfs');
  await Promise.all([debs, tree, bb, stage].map((d) => mkdir(d, { recursive: true })));

  reporter.progress(stepId, 0, 5, `downloading ${recipe.package}`);
  const kernel = await fetchKernel(recipe.package, debs, tree, signal);
  const bbDeb = await download(recipe.busybox, debs, signal);
  await runCommand('dpkg-deb', ['-x', bbDeb, bb], { signal });
  const busybox = join(bb, 'bin', 'busybox');

  reporter.progress(stepId, 1, 5, `resolving modules of ${kernel.release}`);
  await runCommand('depmod', ['-b', tree, kernel.release], { signal });
  const modDir = join(tree, 'lib', 'modules', kernel.release);
  const modules = moduleLoadOrder(await readFile(join(modDir, 'modules.dep'), 'utf8'), recipe.modules);

  reporter.progress(stepId, 2, 5, 'assembling initramfs');
  await mkdir(join(stage, 'bin'), { recursive: true });
  await copyFile(busybox, join(stage, 'bin', 'busybox'));
  await writeFile(join(stage, 'init'), initScript, { mode: 0o755 });
  for (const m of modules) {
    await mkdir(join(stage, 'modules', m, '..'), { recursive: true });
    await copyFile(join(modDir, m), join(stage, 'modules', m));
  }
  await writeFile(join(stage, 'modules', 'load-order'), `${modules.join('\n')}\n`);

  reporter.progress(stepId, 3, 5, 'packing initramfs');
  await mkdir(out, { recursive: true });
  await packInitramfs(stage, join(out, 'initrd.img'), signal);
  await copyFile(join(tree, 'boot', `vmlinuz-${kernel.release}`), join(out, 'vmlinuz'));
  reporter.progress(stepId, 4, 5, 'extracting the ELF kernel (for Firecracker)');
  await extractVmlinux(join(out, 'vmlinuz'), join(out, 'vmlinux'));
  reporter.progress(stepId, 5, 5, kernel.release);
  return {
    release: kernel.release,
    debs: [...kernel.debs, `${recipe.busybox}_${await debField(bbDeb, 'Version')}`],
    modules,
  };
}
