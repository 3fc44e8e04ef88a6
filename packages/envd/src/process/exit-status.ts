import type { EndInfo } from './manager.js';

/** How Go (and so E2B's envd) names the signals a process can die of. */
const SIGNAL_TEXT: Record<string, string> = {
  SIGHUP: 'hangup',
  SIGINT: 'interrupt',
  SIGQUIT: 'quit',
  SIGILL: 'illegal instruction',
  SIGTRAP: 'trace/breakpoint trap',
  SIGABRT: 'aborted',
  SIGBUS: 'bus error',
  SIGFPE: 'floating point exception',
  SIGKILL: 'killed',
  SIGUSR1: 'user defined signal 1',
  SIGSEGV: 'segmentation fault',
  SIGUSR2: 'user defined signal 2',
  SIGPIPE: 'broken pipe',
  SIGALRM: 'alarm clock',
  SIGTERM: 'terminated',
  SIGXCPU: 'CPU time limit exceeded',
  SIGXFSZ: 'file size limit exceeded',
};

/**
 * The end event of a process that exited with `code` or was killed by `signal`:
 * "exit status N" / "signal: killed", exit code -1 for a signal, and `error` set to the
 * status whenever it is not a clean exit (what the SDK shows in CommandExitError).
 */
export function exitDescription(code: number | null, signal: NodeJS.Signals | null): EndInfo {
  if (code !== null) {
    const status = `exit status ${code}`;
    return code === 0
      ? { exitCode: 0, exited: true, status }
      : { exitCode: code, exited: true, status, error: status };
  }
  const name = signal ?? 'SIGKILL';
  const status = `signal: ${SIGNAL_TEXT[name] ?? name.toLowerCase()}`;
  return { exitCode: -1, exited: false, status, error: status };
}
