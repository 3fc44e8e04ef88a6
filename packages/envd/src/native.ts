import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';

/**
 * The native helper shipped beside envd.js (native/aiva-exec.c): user switching with
 * supplementary groups, PTYs, xattrs, inotify and the clock, which Node.js lacks.
 */
export function defaultHelperPath(): string {
  return process.env.AIVA_EXEC ?? join(dirname(process.argv[1] ?? '.'), 'aiva-exec');
}

/**
 * The guest layer's static busybox, beside envd.js (process.argv[1]: envd runs as
 * `ld.so … node envd.js`, where process.execPath is the loader, not node).
 */
export function defaultBusyboxPath(): string {
  return process.env.AIVA_BUSYBOX ?? join(dirname(process.argv[1] ?? '.'), 'busybox');
}

export class HelperError extends Error {
  constructor(
    message: string,
    readonly code: string | number | null | undefined,
  ) {
    super(message);
  }
}

/** Runs the helper to completion and returns its stdout. */
export function runHelper(helper: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(helper, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const msg = stderr.trim().replace(/^aiva-exec: /, '') || err.message;
        reject(new HelperError(msg, (err as NodeJS.ErrnoException).code));
      } else {
        resolve(stdout);
      }
    });
    if (input !== undefined) child.stdin?.end(input);
  });
}
