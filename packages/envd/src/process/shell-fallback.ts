import { stat } from 'node:fs/promises';

/**
 * The e2b SDK starts every command as `/bin/bash -l -c CMD` and every terminal as
 * `/bin/bash -i -l`, but a template's rootfs may have no bash (alpine, distroless, an
 * empty image). There the guest layer's static busybox runs its `sh` with the same
 * arguments (busybox sh takes -l, -i and -c alike). The fallback is narrow: only the
 * exact command `bash` names is rewritten, only while that file does not exist (a bash
 * installed later is used from then on), and only if the busybox is there.
 */
export interface ShellFallback {
  /** The shell the SDK asks for: /bin/bash. */
  bash: string;
  /** The guest layer's busybox (beside envd.js). */
  busybox: string;
}

const exists = (path: string) =>
  stat(path).then(
    () => true,
    () => false,
  );

/** The command to run for `cmd args`: busybox sh in place of a missing bash, else as asked. */
export async function shellCommand(
  cmd: string,
  args: string[],
  fallback: ShellFallback | undefined,
): Promise<{ cmd: string; args: string[] }> {
  if (!fallback || cmd !== fallback.bash || (await exists(fallback.bash))) return { cmd, args };
  if (!(await exists(fallback.busybox))) return { cmd, args };
  return { cmd: fallback.busybox, args: ['sh', ...args] };
}
