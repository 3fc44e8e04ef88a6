import { join } from 'node:path';
import { type KernelSpec, SERVER_DIR } from './kernel-specs.js';

/**
 * How this server starts IPython kernels, as E2B's template configures them: no colours
 * in tracebacks, matplotlib's inline backend (figures come back as PNG results), full
 * reprs of long sequences; no debugpy warning about frozen modules on stderr; and aiva's
 * start-up code (E2B's IPython start-up scripts: charts of figures, DataFrame data, PIL
 * images displayed; and stream messages of at most 1 MiB), run by the kernel itself
 * through `exec_files`, which needs no IPython profile directory in the user's home.
 */
export function pythonKernelTuning(
  spec: KernelSpec,
  dir = SERVER_DIR,
): { args?: string[]; env?: Record<string, string> } {
  if (spec.name !== 'python3') return {};
  return {
    args: [
      '--InteractiveShell.colors=NoColor',
      '--PlainTextFormatter.max_seq_length=0',
      `--IPKernelApp.exec_files=${join(dir, 'aiva_startup.py')}`,
    ],
    env: {
      MPLBACKEND: 'module://matplotlib_inline.backend_inline',
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
    },
  };
}
