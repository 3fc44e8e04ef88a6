import { ENVD_SIGNAL_TEXT } from '@aiva/protocol';
import type { EndInfo } from './manager.js';

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
  const text: string | undefined = ENVD_SIGNAL_TEXT[name as keyof typeof ENVD_SIGNAL_TEXT];
  const status = `signal: ${text ?? name.toLowerCase()}`;
  return { exitCode: -1, exited: false, status, error: status };
}
