import { type ChildProcess, spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import { EventQueue } from '../rpc/event-queue.js';
import type { GuestUser } from '../users.js';
import { exitDescription } from './exit-status.js';
import { type ShellFallback, shellCommand } from './shell-fallback.js';

/** Output chunks are cut to this size (the SDK's and E2B's envd's limit). */
const CHUNK_BYTES = 32 * 1024;
/** End events stay available to a late Connect this long. */
export const END_RETENTION_MS = 30_000;
/**
 * After a process exits, its output is read until it closes; if something the process
 * left running holds it open, until it has been quiet this long…
 */
const OUTPUT_GRACE_MS = 200;
/** …or, if that something keeps writing, at most this long. */
const OUTPUT_AFTER_EXIT_MAX_MS = 2000;
/** Back-pressure: pause reading output while a subscriber has this many chunks queued… */
const PAUSE_BACKLOG = 256;
/** …and resume when every subscriber is below this. */
const RESUME_BACKLOG = 32;

export type OutputKind = 'stdout' | 'stderr' | 'pty';

export interface EndInfo {
  exitCode: number;
  exited: boolean;
  status: string;
  error?: string;
}

export type ProcessEventItem =
  | { kind: 'data'; output: OutputKind; data: Uint8Array }
  | { kind: 'end'; end: EndInfo }
  | { kind: 'keepalive' };

export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

export interface StartSpec {
  config: ProcessConfig;
  /** Absolute working directory (already resolved). */
  cwd: string;
  user: GuestUser;
  /** Sandbox-wide variables, applied after the user's and before the request's. */
  sandboxEnv: Map<string, string>;
  pty?: { cols: number; rows: number };
  tag?: string;
  stdin: boolean;
}

/** A start that failed because of the request (bad cwd, command not found, …). */
export class StartError extends Error {}
/** An operation a process cannot do in its state (stdin closed, no PTY, …). */
export class ProcessStateError extends Error {}

export class ManagedProcess {
  pid = 0;
  ended: EndInfo | undefined;
  private readonly subscribers = new Set<EventQueue<ProcessEventItem>>();
  private pending: ProcessEventItem[] | undefined = [];
  private paused = false;
  private stdinClosed = false;
  private readonly endListeners: (() => void)[] = [];

  constructor(
    readonly config: ProcessConfig,
    readonly tag: string | undefined,
    readonly isPty: boolean,
    private readonly child: ChildProcess,
    private readonly control: (Readable & Writable) | undefined,
  ) {}

  /** A queue of this process's events from now on (ends after its end event). */
  subscribe(): EventQueue<ProcessEventItem> {
    const q = new EventQueue<ProcessEventItem>();
    if (this.ended) {
      q.push({ kind: 'end', end: this.ended });
      q.close();
      return q;
    }
    q.onTake = () => this.maybeResume();
    this.subscribers.add(q);
    return q;
  }

  unsubscribe(q: EventQueue<ProcessEventItem>): void {
    this.subscribers.delete(q);
    q.close();
    this.maybeResume();
  }

  onEnd(listener: () => void): void {
    if (this.ended) listener();
    else this.endListeners.push(listener);
  }

  /** Starts delivering events (held back until the start event has been sent). */
  release(): void {
    const held = this.pending ?? [];
    this.pending = undefined;
    for (const e of held) this.emit(e);
  }

  emit(e: ProcessEventItem): void {
    if (this.pending) {
      this.pending.push(e);
      return;
    }
    for (const q of this.subscribers) {
      q.push(e);
      if (q.length > PAUSE_BACKLOG) this.pause();
    }
    if (e.kind === 'end') {
      for (const q of this.subscribers) q.close();
      this.subscribers.clear();
    }
  }

  /** Output reading is paused because a follower lags behind. */
  get isPaused(): boolean {
    return this.paused;
  }

  private pause(): void {
    if (this.paused) return;
    this.paused = true;
    this.child.stdout?.pause();
    this.child.stderr?.pause();
  }

  private maybeResume(): void {
    if (!this.paused) return;
    for (const q of this.subscribers) if (q.length > RESUME_BACKLOG) return;
    this.paused = false;
    this.child.stdout?.resume();
    this.child.stderr?.resume();
  }

  finish(end: EndInfo): void {
    if (this.ended) return;
    this.ended = end;
    this.release();
    this.emit({ kind: 'end', end });
    this.control?.destroy();
    for (const l of this.endListeners.splice(0)) l();
  }

  writeStdin(data: Uint8Array): Promise<void> {
    if (this.isPty) throw new ProcessStateError('process has a pty: send input to the pty, not to stdin');
    const stdin = this.child.stdin;
    if (!stdin || this.stdinClosed) throw new ProcessStateError('stdin is not enabled or was closed');
    return this.write(stdin, data);
  }

  writePty(data: Uint8Array): Promise<void> {
    if (!this.isPty || !this.child.stdin)
      throw new ProcessStateError('process has no pty: send input to stdin');
    return this.write(this.child.stdin, data);
  }

  private write(stream: Writable, data: Uint8Array): Promise<void> {
    if (this.ended) throw new ProcessStateError(`process ${this.pid} has exited`);
    return new Promise((resolve, reject) => {
      stream.write(data, (err) =>
        err ? reject(new ProcessStateError(`cannot write input: ${err.message}`)) : resolve(),
      );
    });
  }

  closeStdin(): void {
    if (this.isPty)
      throw new ProcessStateError('process has a pty: send Ctrl-D (0x04) instead of closing stdin');
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    this.child.stdin?.end();
  }

  resize(cols: number, rows: number): void {
    if (!this.isPty || !this.control) throw new ProcessStateError('process has no pty to resize');
    if (this.ended) throw new ProcessStateError(`process ${this.pid} has exited`);
    this.control.write(`R ${cols} ${rows}\n`);
  }

  signal(sig: 'SIGTERM' | 'SIGKILL'): void {
    if (this.ended) throw new ProcessStateError(`process ${this.pid} has exited`);
    try {
      process.kill(this.pid, sig);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
    }
  }
}

/**
 * Owns the processes started through the Process service: spawns them through the
 * native helper as the requested user, fans their output out to every stream that
 * watches them, and keeps their end for a while for late Connect calls.
 */
export class ProcessManager {
  private readonly running = new Map<number, ManagedProcess>();
  private readonly ended = new Map<number, { proc: ManagedProcess; timer: NodeJS.Timeout }>();

  constructor(
    private readonly helper: string,
    /** busybox sh where the rootfs has no /bin/bash (see shell-fallback.ts). */
    private readonly shell?: ShellFallback,
  ) {}

  list(): ManagedProcess[] {
    return [...this.running.values()];
  }

  byPid(pid: number): ManagedProcess | undefined {
    return this.running.get(pid) ?? this.ended.get(pid)?.proc;
  }

  byTag(tag: string): ManagedProcess | undefined {
    for (const p of this.running.values()) if (p.tag === tag) return p;
    for (const { proc } of this.ended.values()) if (proc.tag === tag) return proc;
    return undefined;
  }

  /**
   * Starts a process. The returned queue is subscribed before the process can produce
   * anything; call `release()` on the process once the start event is out.
   */
  async start(spec: StartSpec): Promise<{ proc: ManagedProcess; events: EventQueue<ProcessEventItem> }> {
    const st = await stat(spec.cwd).catch(() => undefined);
    if (!st) throw new StartError(`cwd '${spec.cwd}' does not exist`);
    if (!st.isDirectory()) throw new StartError(`cwd '${spec.cwd}' is not a directory`);

    const { user } = spec;
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: user.home,
      USER: user.name,
      LOGNAME: user.name,
    };
    for (const [k, v] of spec.sandboxEnv) env[k] = v;
    for (const [k, v] of Object.entries(spec.config.envs)) env[k] = v;

    const args = [
      'exec',
      '--uid',
      String(user.uid),
      '--gid',
      String(user.gid),
      '--groups',
      user.groups.join(','),
    ];
    if (spec.pty) args.push('--pty', String(spec.pty.cols || 80), String(spec.pty.rows || 24));
    // What runs may differ from what was asked (no bash); the process keeps what was asked.
    const command = await shellCommand(spec.config.cmd, spec.config.args, this.shell);
    args.push('--', command.cmd, ...command.args);
    const isPty = spec.pty !== undefined;
    const child = spawn(this.helper, args, {
      cwd: spec.cwd,
      env,
      stdio: [isPty || spec.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe', 'pipe'],
    });
    const control = child.stdio[3] as (Readable & Writable) | null;
    // Writes to a process that is gone must not bring envd down.
    child.stdin?.on('error', () => {});
    control?.on('error', () => {});

    const pid = await new Promise<number>((resolve, reject) => {
      let text = '';
      const fail = (msg: string) => {
        for (const stream of child.stdio) stream?.destroy();
        reject(new StartError(msg));
      };
      child.once('error', (e) => fail(`cannot start '${spec.config.cmd}': ${e.message}`));
      if (!control) return fail('no control channel to the helper');
      control.setEncoding('utf8');
      const onData = (chunk: string) => {
        text += chunk;
        const err = /^E (.*)$/m.exec(text);
        if (err) return fail(err[1] ?? 'cannot start');
        const started = /^P (\d+)$/m.exec(text);
        if (isPty && started) {
          control.off('data', onData);
          resolve(Number(started[1]));
        }
      };
      control.on('data', onData);
      control.once('end', () => {
        const err = /^E (.*)$/m.exec(text);
        if (err) fail(err[1] ?? 'cannot start');
        else if (!isPty && child.pid !== undefined) resolve(child.pid);
        else fail(`'${spec.config.cmd}' did not start`);
      });
    });
    if (!isPty) control?.destroy();

    const proc = new ManagedProcess(
      spec.config,
      spec.tag,
      isPty,
      child,
      isPty ? (control ?? undefined) : undefined,
    );
    proc.pid = pid;
    const events = proc.subscribe();
    this.running.set(pid, proc);

    let lastOutput = Date.now();
    const forward = (stream: Readable | null, kind: OutputKind) => {
      stream?.on('data', (chunk: Buffer) => {
        lastOutput = Date.now();
        for (let i = 0; i < chunk.length; i += CHUNK_BYTES) {
          proc.emit({ kind: 'data', output: kind, data: chunk.subarray(i, i + CHUNK_BYTES) });
        }
      });
    };
    forward(child.stdout, isPty ? 'pty' : 'stdout');
    if (isPty) child.stderr?.on('data', (d: Buffer) => process.stderr.write(`envd: pty helper: ${d}`));
    else forward(child.stderr, 'stderr');

    let exit: EndInfo | undefined;
    const finish = () => {
      if (!exit || proc.ended) return;
      proc.finish(exit);
      this.running.delete(pid);
      const timer = setTimeout(() => this.ended.delete(pid), END_RETENTION_MS);
      timer.unref();
      const older = this.ended.get(pid);
      if (older) clearTimeout(older.timer);
      this.ended.set(pid, { proc, timer });
    };
    child.once('exit', (code, signal) => {
      exit = exitDescription(code, signal);
      // Output normally closes with the process, but a daemon it forked may hold it open.
      // Keep reading while output still flows (or waits for a slow follower), then cut.
      const exitedAt = Date.now();
      const check = () => {
        if (proc.ended) return;
        const quiet = Date.now() - lastOutput >= OUTPUT_GRACE_MS;
        if (proc.isPaused || (!quiet && Date.now() - exitedAt < OUTPUT_AFTER_EXIT_MAX_MS)) {
          grace = setTimeout(check, OUTPUT_GRACE_MS);
          return;
        }
        child.stdout?.destroy();
        child.stderr?.destroy();
        finish();
      };
      let grace = setTimeout(check, OUTPUT_GRACE_MS);
      child.once('close', () => {
        clearTimeout(grace);
        finish();
      });
    });
    return { proc, events };
  }

  /** Kills every process (envd is stopping). */
  killAll(): void {
    for (const p of this.running.values()) {
      try {
        p.signal('SIGKILL');
      } catch {}
    }
  }
}
