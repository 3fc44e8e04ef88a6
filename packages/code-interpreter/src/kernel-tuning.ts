import { dirname, join } from 'node:path';
import type { KernelSpec } from './kernel-specs.js';

/** Where the server's guest files are: beside its bundle (server.js). */
const guestDir = dirname(process.argv[1] ?? '.');

/**
 * How this server starts IPython kernels, as E2B's template configures them: no colours
 * in tracebacks, matplotlib's inline backend (figures come back as PNG results), full
 * reprs of long sequences; and no debugpy warning about frozen modules on stderr. And
 * stream messages of at most 1 MiB (ipython-bounded-output.py).
 */
export function pythonKernelTuning(spec: KernelSpec): { args?: string[]; env?: Record<string, string> } {
  if (spec.name !== 'python3') return {};
  return {
    args: [
      '--InteractiveShell.colors=NoColor',
      '--PlainTextFormatter.max_seq_length=0',
      `--IPKernelApp.exec_files=${JSON.stringify([join(guestDir, 'ipython-bounded-output.py')])}`,
    ],
    env: {
      MPLBACKEND: 'module://matplotlib_inline.backend_inline',
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
    },
  };
}
