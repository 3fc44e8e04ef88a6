import { open, realpath } from 'node:fs/promises';
import { runCommand } from '../host/command.js';

// What a host program needs to run somewhere else: its ELF interpreter (none for a
// static program) and the shared libraries the host's loader resolves for it.

const PT_INTERP = 3;

/**
 * The ELF interpreter (dynamic loader) `path` asks for, or undefined for a static
 * program. Only 64-bit little-endian ELF (x86-64, arm64) is read: that is every host
 * aiva runs on, and anything else is refused rather than guessed at.
 */
export async function elfInterpreter(path: string): Promise<string | undefined> {
  const fh = await open(path, 'r');
  try {
    const header = Buffer.alloc(64);
    await fh.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${path} is not an ELF program`);
    if (header[4] !== 2 || header[5] !== 1) throw new Error(`${path} is not 64-bit little-endian ELF`);
    const phoff = Number(header.readBigUInt64LE(32));
    const phentsize = header.readUInt16LE(54);
    const phnum = header.readUInt16LE(56);
    const table = Buffer.alloc(phentsize * phnum);
    await fh.read(table, 0, table.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const ph = table.subarray(i * phentsize);
      if (ph.readUInt32LE(0) !== PT_INTERP) continue;
      const offset = Number(ph.readBigUInt64LE(8));
      const size = Number(ph.readBigUInt64LE(32));
      const text = Buffer.alloc(size);
      await fh.read(text, 0, size, offset);
      return text.toString('utf8').replace(/\0.*$/s, '');
    }
    return undefined;
  } finally {
    await fh.close();
  }
}

/** Throws unless `path` is a static program (one that runs on any root filesystem). */
export async function assertStatic(path: string, what: string): Promise<void> {
  const interp = await elfInterpreter(path);
  if (interp) throw new Error(`${what} ${path} is not static (it needs ${interp})`);
}

/**
 * The shared libraries of the dynamic program `path`, as the host's `ldd` resolves
 * them: soname → the real file. The vDSO (provided by the kernel) and the loader itself
 * (see elfInterpreter) are not listed. A library ldd cannot find is an error.
 */
export async function sharedLibraries(path: string): Promise<Map<string, string>> {
  const { stdout } = await runCommand('ldd', [path]);
  const libs = new Map<string, string>();
  for (const line of stdout.split('\n')) {
    const m = /^\s*(\S+)\s+=>\s+(.*?)\s*(\(0x[0-9a-f]+\))?$/.exec(line);
    if (!m) continue;
    const [, soname = '', target = ''] = m;
    if (target === 'not found') throw new Error(`${path} needs ${soname}, which ldd cannot find`);
    // `linux-vdso.so.1 =>  (0x…)` on some ldd versions: nothing to copy.
    if (!target.startsWith('/')) continue;
    libs.set(soname, await realpath(target));
  }
  return libs;
}
