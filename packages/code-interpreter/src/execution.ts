import type { CodeContext } from './code-context.js';
import type { JupyterMessage } from './jupyter-wire.js';
import type { Kernel } from './kernel.js';
import { type OutputLine, resultFields, splitStreamText } from './output-lines.js';
import { ENV_LANGUAGES, envRestoreCode, envSetCode, usableEnvVars } from './run-env.js';

export interface RunRequest {
  code: string;
  /** Per-run environment variables (E2B's `env_vars`). */
  envVars: Record<string, string>;
  /** The sandbox's env vars, asked of envd for a fresh kernel's first run. */
  sandboxEnvs: () => Promise<Record<string, string>>;
  /** Aborted when the client went away: the kernel is interrupted. */
  signal: AbortSignal;
  /** Writes a line to the client; false when the client is behind (`drained` then waits). */
  write: (line: OutputLine) => boolean;
  /** Resolves when the client has taken what was written (or is gone). */
  drained: () => Promise<void>;
}

/** How long an interrupted run may take to stop before its kernel is killed. */
const INTERRUPT_GRACE_MS = 10_000;
/** A keepalive line after this long without output, so idle proxies keep the stream. */
const KEEPALIVE_MS = 5_000;

/**
 * Errors after which the kernel runs on without its state, as a fresh kernel: the
 * JavaScript kernel's answer to an interrupt (it restarts its session, guest/js-kernel.cjs)
 * and aiva's bash kernel's when a cell ended bash (a new one starts, guest/bash_kernel.py).
 */
const STATE_LOST = new Set(['KernelInterrupted', 'BashExited']);

const traceback = (t: unknown): string => (Array.isArray(t) ? t.join('\n') : String(t ?? ''));

/**
 * Runs `req.code` in `ctx`'s kernel, in its turn, writing E2B's stream lines: the
 * execution count, stdout and stderr, results, the first error. It ends when the kernel
 * has replied and gone idle; a kernel that dies gives an error line (the next run starts
 * a fresh one). The client going away interrupts the kernel.
 */
export function runInContext(ctx: CodeContext, req: RunRequest): Promise<void> {
  return ctx.enqueue(async () => {
    if (req.signal.aborted) return;
    let kernel: Kernel;
    try {
      kernel = await ctx.ensureKernel();
    } catch (e) {
      req.write({ type: 'error', name: 'KernelStartError', value: (e as Error).message, traceback: '' });
      return;
    }
    let code = req.code;
    const prefixes: string[] = [];
    if (ctx.kernelRuns === 0 && ENV_LANGUAGES.includes(ctx.info.language)) {
      const envs = await req.sandboxEnvs().catch((e: Error) => {
        process.stderr.write(`code-interpreter: the sandbox's env vars are not set: ${e.message}\n`);
        return {};
      });
      ctx.sandboxEnvs = usableEnvVars(ctx.info.language, envs);
      prefixes.push(envSetCode(ctx.info.language, ctx.sandboxEnvs));
    }
    prefixes.push(envSetCode(ctx.info.language, req.envVars));
    code = withPrefix(prefixes.filter(Boolean), code);
    ctx.kernelRuns++;
    const errorName = await execute(kernel, code, req);
    // The next run sets the sandbox's env vars again, as on a fresh kernel.
    if (errorName && STATE_LOST.has(errorName)) ctx.kernelRuns = 0;
    const restore = envRestoreCode(ctx.info.language, req.envVars, ctx.sandboxEnvs);
    if (restore && kernel.alive) await executeSilently(kernel, restore);
  });
}

/** The code with `prefixes` before it, indented as its first non-empty line (IPython dedents). */
function withPrefix(prefixes: string[], code: string): string {
  if (prefixes.length === 0) return code;
  const first = code.split('\n').find((l) => l.trim() !== '') ?? '';
  const indent = /^[ \t]*/.exec(first)?.[0] ?? '';
  const lines = prefixes.join('\n').split('\n');
  return `${lines.map((l) => indent + l).join('\n')}\n${code}`;
}

/** Runs `code`; resolves to the name of its error, if any. */
function execute(kernel: Kernel, code: string, req: RunRequest): Promise<string | undefined> {
  return new Promise<string | undefined>((resolve) => {
    let replied = false;
    let idle = false;
    let errored: string | undefined;
    let msgId = '';
    let finished = false;
    let keepalive: NodeJS.Timeout | undefined;
    let grace: NodeJS.Timeout | undefined;
    let stopWatching = () => {};
    // Backpressure: while the client is behind, the kernel is stopped (its iopub would
    // drop what this side does not read), so output streams through and is never held
    // whole in memory.
    let holding = false;
    const write = (line: OutputLine) => {
      if (finished) return;
      keepalive?.refresh();
      if (req.write(line) || holding) return;
      holding = true;
      kernel.hold(true);
      void req.drained().then(() => {
        holding = false;
        kernel.hold(false);
      });
    };
    const finish = () => {
      if (finished) return;
      finished = true;
      kernel.hold(false);
      clearInterval(keepalive);
      clearTimeout(grace);
      req.signal.removeEventListener('abort', onAbort);
      stopWatching();
      kernel.forget(msgId);
      resolve(errored);
    };
    const error = (name: string, value: string, tb: string) => {
      if (errored) return;
      errored = name;
      write({ type: 'error', name, value, traceback: tb });
    };
    const onMessage = (msg: JupyterMessage, channel: 'iopub' | 'shell') => {
      const c = msg.content as Record<string, unknown>;
      if (channel === 'shell') {
        if (msg.header.msg_type !== 'execute_reply') return;
        replied = true;
        if (c.status === 'error') error(String(c.ename), String(c.evalue), traceback(c.traceback));
        if (c.status === 'abort') error('ExecutionAborted', 'Execution was aborted', '');
      } else {
        switch (msg.header.msg_type) {
          case 'execute_input':
            write({ type: 'number_of_executions', execution_count: Number(c.execution_count) });
            break;
          case 'stream': {
            const type = c.name === 'stderr' ? 'stderr' : 'stdout';
            for (const text of splitStreamText(String(c.text ?? '')))
              write({ type, text, timestamp: msg.header.date });
            break;
          }
          case 'display_data':
          case 'execute_result':
            write({
              type: 'result',
              ...resultFields((c.data ?? {}) as Record<string, unknown>),
              is_main_result: msg.header.msg_type === 'execute_result',
            });
            break;
          case 'error':
            error(String(c.ename), String(c.evalue), traceback(c.traceback));
            break;
          case 'status':
            if (c.execution_state === 'idle') idle = true;
            break;
        }
      }
      if (replied && idle) finish();
    };
    const onAbort = () => {
      void kernel.interrupt();
      // A kernel that does not stop (a loop in C code ignores SIGINT) is killed, so the
      // runs queued behind this one get a fresh kernel.
      grace = setTimeout(() => void kernel.kill(), INTERRUPT_GRACE_MS);
    };
    req.signal.addEventListener('abort', onAbort, { once: true });
    keepalive = setInterval(() => write({ type: 'keepalive' }), KEEPALIVE_MS);
    stopWatching = kernel.onExit((exit) => {
      const how = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
      error(
        'KernelDied',
        `The kernel ${how}; the context's kernel starts afresh, without its state, at the next run`,
        exit.tail,
      );
      finish();
    });
    kernel
      .send(
        'execute_request',
        {
          code,
          silent: false,
          store_history: true,
          user_expressions: {},
          allow_stdin: false,
          stop_on_error: true,
        },
        onMessage,
      )
      .then((id) => {
        msgId = id;
        if (finished) kernel.forget(id);
      })
      .catch((e: Error) => {
        error('KernelError', `cannot send the code to the kernel: ${e.message}`, '');
        finish();
      });
  });
}

/** Runs bookkeeping code (no output, no execution count) and waits for its reply, at most 5 s. */
export function executeSilently(kernel: Kernel, code: string): Promise<void> {
  return new Promise<void>((resolve) => {
    let id = '';
    let stopWatching = () => {};
    const done = () => {
      clearTimeout(timer);
      stopWatching();
      kernel.forget(id);
      resolve();
    };
    const timer = setTimeout(done, 5000);
    stopWatching = kernel.onExit(done);
    kernel
      .send(
        'execute_request',
        { code, silent: true, store_history: false, user_expressions: {}, allow_stdin: false },
        (msg, channel) => {
          if (channel === 'shell' && msg.header.msg_type === 'execute_reply') done();
        },
      )
      .then((msgId) => {
        id = msgId;
      })
      .catch(done);
  });
}
