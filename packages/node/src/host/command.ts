import { spawn } from 'node:child_process';

/** Options for running a host tool. */
export interface CommandOptions {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
  /** Aborting sends SIGTERM (then SIGKILL after `killGraceMs`) and rejects. */
  signal?: AbortSignal;
  killGraceMs?: number;
  /**
   * Run in a process group of its own and signal the whole group on abort, so that
   * tools which fork workers (apt, dpkg) stop with it.
   */
  processGroup?: boolean;
  /**
   * File descriptors for the child's stdout and stderr instead of pipes (its output is
   * then neither captured nor streamed), e.g. a log file it keeps writing after exit.
   */
  outputFd?: number | 'ignore';
  /** Name used in error messages instead of the full command line. */
  displayName?: string;
  /** Called for every complete line of output, as it arrives. */
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** How much of a failed command's output an error keeps. */
const ERROR_TAIL_BYTES = 4096;

/** A host tool exited non-zero, was killed, or could not be started. */
export class CommandError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    readonly output: string,
    readonly aborted: boolean,
  ) {
    const how = aborted
      ? 'was interrupted'
      : signal
        ? `was killed by ${signal}`
        : exitCode === null
          ? 'could not start'
          : `exited with code ${exitCode}`;
    const tail = output.trim();
    super(`${command} ${how}${tail ? `:\n${tail}` : ''}`);
    this.name = 'CommandError';
  }
}

function tailOf(s: string): string {
  return s.length > ERROR_TAIL_BYTES ? `…${s.slice(-ERROR_TAIL_BYTES)}` : s;
}

function lineSplitter(emit: (line: string) => void): { push(chunk: string): void; end(): void } {
  let rest = '';
  return {
    push(chunk) {
      rest += chunk;
      let nl = rest.indexOf('\n');
      while (nl >= 0) {
        emit(rest.slice(0, nl).replace(/\r$/, ''));
        rest = rest.slice(nl + 1);
        nl = rest.indexOf('\n');
      }
    },
    end() {
      if (rest.length > 0) emit(rest);
      rest = '';
    },
  };
}

/**
 * Runs `cmd args` without a shell and resolves with its output when it exits 0.
 * Rejects with a CommandError carrying the tail of its output otherwise.
 */
export function runCommand(
  cmd: string,
  args: readonly string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  const display = options.displayName ?? [cmd, ...args].join(' ');
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new CommandError(display, null, null, '', true));
      return;
    }
    const child = spawn(cmd, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio:
        options.outputFd === undefined
          ? ['pipe', 'pipe', 'pipe']
          : ['pipe', options.outputFd, options.outputFd],
      detached: options.processGroup ?? false,
    });
    const kill = (sig: NodeJS.Signals) => {
      try {
        if (options.processGroup && child.pid) process.kill(-child.pid, sig);
        else child.kill(sig);
      } catch {
        // already gone
      }
    };
    let stdout = '';
    let stderr = '';
    let combined = '';
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      aborted = true;
      kill('SIGTERM');
      killTimer = setTimeout(() => kill('SIGKILL'), options.killGraceMs ?? 10_000);
      killTimer.unref();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const outLines = lineSplitter((l) => options.onLine?.(l, 'stdout'));
    const errLines = lineSplitter((l) => options.onLine?.(l, 'stderr'));
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      combined = tailOf(combined + d);
      outLines.push(d);
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      combined = tailOf(combined + d);
      errLines.push(d);
    });
    child.stdin?.on('error', () => {
      // The child may exit without reading its input; its exit status tells what happened.
    });
    child.stdin?.end(options.input ?? '');

    child.on('error', (err: NodeJS.ErrnoException) => {
      options.signal?.removeEventListener('abort', onAbort);
      const why = err.code === 'ENOENT' ? `${cmd} is not installed (not found on PATH)` : err.message;
      reject(new CommandError(display, null, null, why, false));
    });
    child.on('close', (code, sig) => {
      clearTimeout(killTimer);
      options.signal?.removeEventListener('abort', onAbort);
      outLines.end();
      errLines.end();
      if (code === 0 && !aborted) resolve({ stdout, stderr });
      else reject(new CommandError(display, code, sig, combined, aborted));
    });
  });
}
