import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, realpath, stat, symlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Artefacts } from './artefacts.js';
import { ImageBuildError } from './build-reporter.js';
import { assertStatic, elfInterpreter, sharedLibraries } from './elf-deps.js';
import { type BuildOptions, GUEST_DIR, type GuestTools } from './image-types.js';
import { contentHash } from './recipe.js';

/**
 * Bump when the layout of the guest layer changes without its inputs changing, so that
 * stores made by older code are not reused.
 */
const GUEST_LAYER_VERSION = 3;

/**
 * The guest layer's Node runtime, relative to GUEST_DIR: `node`, its libraries and their
 * loader in `lib/`, and `ld.so` (a link to that loader) when node is dynamic. The init
 * starts envd as `ld.so --library-path lib node envd.js`, so node never loads a library
 * of the template's rootfs (which may be musl, another glibc, or nothing at all).
 */
export const GUEST_RUNTIME_DIR = 'runtime';

/** The host programs the guest layer carries unless the store is told otherwise. */
export function hostGuestTools(): GuestTools {
  return {
    busybox: '/bin/busybox',
    tini: '/usr/bin/tini-static',
    // The Node that runs aiva runs envd's bundle too.
    node: process.execPath,
  };
}

/** One thing installed under GUEST_DIR: a copy of a host file, or a symbolic link. */
export type GuestEntry = { kind: 'file'; src: string; exec: boolean } | { kind: 'link'; target: string };

export interface GuestLayerSource {
  /** Path relative to GUEST_DIR → what goes there. */
  entries: Map<string, GuestEntry>;
  hash: string;
}

export interface GuestLayerOptions {
  /** envd's guest files (envd.js, aiva-exec, package.json), installed as they are. */
  envdDir: string;
  /** images/guest/init. */
  initScript: string;
  /**
   * The code-interpreter server's guest files (its bundle, its zeromq addon, its start
   * script), installed under `code-interpreter/` for templates whose start command runs
   * it (code-interpreter-v1).
   */
  codeInterpreterDir?: string;
  /**
   * The MCP gateway's guest files (its bundle and launcher), installed under `mcp-gateway/`;
   * the mcp-gateway template links its launcher as /usr/local/bin/mcp-gateway.
   */
  mcpGatewayDir?: string;
  tools: GuestTools;
}

/** What identifies a file's content without reading it: if this is unchanged, so is the file. */
const statKey = (st: { dev: number; ino: number; size: number; mtimeMs: number; ctimeMs: number }) =>
  `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;

/**
 * The guest layer: everything a sandbox needs from aiva, under GUEST_DIR, so that it
 * runs on any Linux root filesystem, even an empty one — envd's bundle and native
 * helper, the init script, a static busybox (the init's shell and applets; envd's shell
 * where the rootfs has no /bin/bash), a static tini, and a Node runtime with its own
 * libraries and loader.
 *
 * Its hash covers the content and executable bit of everything installed, so a change
 * to envd, the init or any host program it carries (a Node or libc upgrade) makes a new
 * layer. Files are hashed once per change of their stat (node alone is ~100 MB, and the
 * source is worked out on every sandbox create).
 */
export class GuestLayer {
  private readonly digests = new Map<string, { key: string; digest: string }>();
  private runtime: { key: string; entries: [string, GuestEntry][] } | undefined;

  constructor(
    private readonly artefacts: Artefacts,
    private readonly options: GuestLayerOptions,
  ) {}

  /** What the layer holds now, and its hash; an ImageBuildError if something is missing. */
  async source(): Promise<GuestLayerSource> {
    const { envdDir, initScript, tools } = this.options;
    const entries = new Map<string, GuestEntry>();
    const parts: Record<string, unknown> = {};
    try {
      // A built package's guest files, under `prefix`; `main` must be among them.
      const addBuilt = async (dir: string, prefix: string, main: string, what: string) => {
        const names = (await readdir(dir)).sort();
        if (!names.includes(main)) throw new Error(`${dir} holds no ${main} (has ${what} been built?)`);
        for (const name of names) {
          const src = join(dir, name);
          entries.set(`${prefix}${name}`, {
            kind: 'file',
            src,
            exec: ((await stat(src)).mode & 0o111) !== 0,
          });
        }
      };
      await addBuilt(envdDir, '', 'envd.js', 'envd');
      const ciDir = this.options.codeInterpreterDir;
      if (ciDir) await addBuilt(ciDir, 'code-interpreter/', 'server.js', 'the code interpreter');
      const gatewayDir = this.options.mcpGatewayDir;
      if (gatewayDir) await addBuilt(gatewayDir, 'mcp-gateway/', 'gateway.js', 'the MCP gateway');
      entries.set('init', { kind: 'file', src: initScript, exec: true });
      for (const [name, path] of [
        ['busybox', tools.busybox],
        ['tini', tools.tini],
      ] as const) {
        await assertStatic(path, name);
        entries.set(name, { kind: 'file', src: await realpath(path), exec: true });
      }
      for (const [name, entry] of await this.runtimeEntries(tools.node)) entries.set(name, entry);
      for (const [name, entry] of entries) {
        if (entry.kind === 'link') parts[name] = { link: entry.target };
        else parts[name] = { sha256: await this.digest(entry.src), exec: entry.exec };
      }
    } catch (e) {
      throw new ImageBuildError('guest layer', (e as Error).message);
    }
    return { entries, hash: contentHash({ v: GUEST_LAYER_VERSION, role: 'guest', parts }) };
  }

  /** The guest layer of this aiva, made if the store lacks it; its hash. */
  async ensure(template: string, options: BuildOptions): Promise<string> {
    const { entries, hash } = await this.source();
    await this.artefacts.ensureLayer(
      hash,
      { role: 'guest', template },
      'guest layer (envd, init, busybox, tini, node)',
      options,
      async (rootfs) => {
        // Only GUEST_DIR is the layer's own: its parents are made 0755 like any rootfs's
        // (an empty rootfs gets them from here).
        const dir = join(rootfs, GUEST_DIR);
        await mkdir(dir, { recursive: true, mode: 0o755 });
        for (const [name, entry] of entries) {
          const dest = join(dir, name);
          await mkdir(dirname(dest), { recursive: true, mode: 0o755 });
          if (entry.kind === 'link') {
            await symlink(entry.target, dest);
            continue;
          }
          await copyFile(entry.src, dest);
          // Executables (init, programs, the loader) stay executable; the hash covers it.
          await chmod(dest, entry.exec ? 0o755 : 0o644);
        }
      },
    );
    return hash;
  }

  /**
   * node, and when it is dynamic its libraries (under their sonames) and its loader, as
   * `ldd` resolves them on this host. Worked out again only when node changes.
   */
  private async runtimeEntries(node: string): Promise<[string, GuestEntry][]> {
    const src = await realpath(node);
    const key = `${src}|${statKey(await stat(src))}`;
    if (this.runtime?.key === key) return this.runtime.entries;
    const dir = GUEST_RUNTIME_DIR;
    const entries: [string, GuestEntry][] = [[`${dir}/node`, { kind: 'file', src, exec: true }]];
    const interp = await elfInterpreter(src);
    if (interp) {
      for (const [soname, lib] of [...(await sharedLibraries(src))].sort(([a], [b]) => a.localeCompare(b)))
        entries.push([`${dir}/lib/${soname}`, { kind: 'file', src: lib, exec: false }]);
      const loader = basename(interp);
      entries.push([`${dir}/lib/${loader}`, { kind: 'file', src: await realpath(interp), exec: true }]);
      entries.push([`${dir}/ld.so`, { kind: 'link', target: `lib/${loader}` }]);
    }
    this.runtime = { key, entries };
    return entries;
  }

  /** sha256 of a file's content, cached while its stat is unchanged. */
  private async digest(path: string): Promise<string> {
    const key = statKey(await stat(path));
    const known = this.digests.get(path);
    if (known?.key === key) return known.digest;
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
    const digest = hash.digest('hex');
    this.digests.set(path, { key, digest });
    return digest;
  }
}
