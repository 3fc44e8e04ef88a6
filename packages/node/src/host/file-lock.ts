import { spawn } from 'node:child_process';
import { once } from 'node:events';

/** A held lock; `release` is idempotent. */
export interface FileLock {
  release(): Promise<void>;
}

export interface LockOptions {
  signal?: AbortSignal;
  /** Fail at once (with a LockBusyError) instead of waiting when someone else holds the lock. */
  noWait?: boolean;
  /** Called once if the lock is held by someone else and we have to wait. */
  onWait?: () => void;
}

export class LockBusyError extends Error {
  override name = 'LockBusyError';
}

/**
 * Takes an exclusive flock(2) on `path` (created if missing) through util-linux
 * `flock`, which holds it for as long as we keep its stdin open. The kernel drops the
 * lock when this process dies, however it dies: there is no stale lock to clean up.
 */
export async function lockFile(path: string, options: LockOptions = {}): Promise<FileLock> {
  const mode = options.noWait ? ['--exclusive', '--nonblock', '--conflict-exit-code', '75'] : ['--exclusive'];
  const child = spawn('flock', [...mode, path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const waitTimer = setTimeout(() => options.onWait?.(), 150);
  const onAbort = () => child.kill('SIGTERM');
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        if (d.includes('locked')) resolve();
      });
      child.on('error', reject);
      child.on('exit', (code, sig) => {
        if (code === 75 && options.noWait) {
          reject(new LockBusyError(`${path} is held by another process`));
          return;
        }
        const why = options.signal?.aborted
          ? 'interrupted'
          : `flock exited with ${code ?? sig}: ${stderr.trim()}`;
        reject(new Error(`could not lock ${path}: ${why}`));
      });
    });
  } finally {
    clearTimeout(waitTimer);
    options.signal?.removeEventListener('abort', onAbort);
  }
  let released: Promise<void> | undefined;
  return {
    release() {
      released ??= (async () => {
        if (child.exitCode === null && child.signalCode === null) {
          const exited = once(child, 'exit');
          child.stdin.end();
          await exited;
        }
      })();
      return released;
    },
  };
}
