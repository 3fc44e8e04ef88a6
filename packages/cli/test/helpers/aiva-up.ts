import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { cliPath } from './run-cli.js';

export interface RunningUp {
  url: string;
  process: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, and waits for it to end: its exit code (null if a signal ended it). */
  stop(): Promise<number | null>;
}

/**
 * Starts the built `aiva up` on a free port with the data directory `home` and waits
 * until it says it is up. While another aiva node holds the host, tries again every 2 s
 * for up to `nodeWaitMs`.
 */
export async function startUp(
  home: string,
  args: readonly string[] = [],
  options: { nodeWaitMs?: number } = {},
): Promise<RunningUp> {
  const deadline = Date.now() + (options.nodeWaitMs ?? 5 * 60_000);
  for (;;) {
    const child = spawn(process.execPath, [cliPath, 'up', '--port', '0', ...args], {
      env: { ...process.env, AIVA_HOME: home },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    const started = new Promise<boolean>((resolve) => {
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (/ is up at /.test(stderr)) resolve(true);
      });
      child.once('exit', () => resolve(false));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 5 * 60_000);
    const up = await started;
    clearTimeout(timer);
    if (!up) {
      if (/another aiva node runs on this host/.test(stderr) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      throw new Error(
        `aiva up did not start (exit ${child.exitCode ?? child.signalCode}):\n${stdout}${stderr}`,
      );
    }
    return {
      url: / is up at (\S+)/.exec(stderr)?.[1] ?? '',
      process: child,
      stdout: () => stdout,
      stderr: () => stderr,
      async stop() {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, 'exit');
          child.kill('SIGTERM');
          await exited;
        }
        return child.exitCode;
      },
    };
  }
}
