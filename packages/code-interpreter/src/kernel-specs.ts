import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Where this server's guest files are: beside its bundle (`server.js`, which the guest
 * layer installs in /usr/local/lib/aiva/code-interpreter), with the kernels it carries
 * and the IPython start-up code.
 */
export const SERVER_DIR = process.env.AIVA_CODE_INTERPRETER_DIR ?? dirname(process.argv[1] ?? '.');

/** A Jupyter kernelspec (`kernel.json`): how to start a kernel. */
export interface KernelSpec {
  name: string;
  argv: string[];
  display_name?: string;
  language?: string;
  env?: Record<string, string>;
  /** `signal` (SIGINT to the kernel's process group, the default) or `message` (interrupt_request). */
  interrupt_mode?: 'signal' | 'message';
}

/** An unknown language or a kernel that cannot be had: the caller's fault (a 4xx). */
export class UnknownLanguageError extends Error {
  override name = 'UnknownLanguageError';
}

/**
 * E2B's language names (what `runCode`'s `language` and `createCodeContext` send),
 * normalised as E2B's server does: trimmed, lower case, `js` → `javascript`,
 * `ts` → `typescript`, none → `python`.
 */
export function normaliseLanguage(language: string | undefined | null): string {
  const l = (language ?? '').trim().toLowerCase();
  if (l === '') return 'python';
  if (l === 'js') return 'javascript';
  if (l === 'ts') return 'typescript';
  return l;
}

/** The kernelspec names a language may be served by, in order of preference. */
const KERNELS_OF: Record<string, string[]> = {
  python: ['python3'],
  javascript: ['javascript'],
  typescript: ['javascript'],
  r: ['ir', 'r'],
  bash: ['bash'],
};

/**
 * Kernels this server carries itself, used when no kernelspec of that name is installed:
 * aiva's bash kernel (`guest/bash_kernel.py`, a wrapper kernel on Debian's ipykernel;
 * no bash kernel is packaged for Debian).
 */
export function builtinSpec(name: string, dir = SERVER_DIR): KernelSpec | undefined {
  const kernel = join(dir, 'bash_kernel.py');
  if (name !== 'bash' || !existsSync(kernel)) return undefined;
  return {
    name,
    argv: ['python3', kernel, '-f', '{connection_file}'],
    display_name: 'Bash',
    language: 'bash',
    // ipykernel imports debugpy, which warns about frozen modules on stderr otherwise.
    env: { PYDEVD_DISABLE_FILE_VALIDATION: '1' },
  };
}

/** Languages E2B knows that this template cannot serve, and why (a 400 with this text). */
const UNAVAILABLE: Record<string, string> = {
  java:
    'No Java kernel in this template: E2B uses IJava, which is not packaged for Debian and cannot be ' +
    'downloaded when the template is built; use python, javascript, typescript, r or bash',
};

/** Where Jupyter looks for kernelspecs (jupyter_core's data path), first wins. */
export function kernelSpecDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  if (env.JUPYTER_PATH) dirs.push(...env.JUPYTER_PATH.split(':').filter(Boolean));
  dirs.push(
    join(env.HOME ?? homedir(), '.local/share/jupyter'),
    '/usr/local/share/jupyter',
    '/usr/share/jupyter',
  );
  return dirs.map((d) => join(d, 'kernels'));
}

async function readSpec(dir: string, name: string): Promise<KernelSpec | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, name, 'kernel.json'), 'utf8');
  } catch {
    return undefined;
  }
  const spec = JSON.parse(text) as Omit<KernelSpec, 'name'>;
  if (!Array.isArray(spec.argv) || spec.argv.length === 0) return undefined;
  return { ...spec, name };
}

/** The kernelspec for `language` (normalised); an UnknownLanguageError when there is none. */
export async function kernelSpecFor(
  language: string,
  dirs = kernelSpecDirs(),
  builtin: (name: string) => KernelSpec | undefined = builtinSpec,
): Promise<KernelSpec> {
  const names = KERNELS_OF[language];
  const unavailable = UNAVAILABLE[language];
  if (unavailable) throw new UnknownLanguageError(unavailable);
  if (!names) {
    throw new UnknownLanguageError(
      `Unknown language "${language}": known are ${Object.keys(KERNELS_OF).join(', ')}`,
    );
  }
  for (const name of names) {
    for (const dir of dirs) {
      const spec = await readSpec(dir, name);
      if (spec) return spec;
    }
  }
  for (const name of names) {
    const spec = builtin(name);
    if (spec) return spec;
  }
  throw new UnknownLanguageError(`No kernel for language "${language}" in this sandbox`);
}
