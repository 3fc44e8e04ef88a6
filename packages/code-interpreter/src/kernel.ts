import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Dealer, Subscriber } from 'zeromq';
import { type JupyterMessage, MessageCodec } from './jupyter-wire.js';
import type { KernelSpec } from './kernel-specs.js';

export interface KernelOptions {
  spec: KernelSpec;
  cwd: string;
  /** The kernel's whole environment (the spec's env is added on top). */
  env: NodeJS.ProcessEnv;
  /** Where the connection file goes (mode 0600: it holds the key). */
  runtimeDir: string;
  /** Arguments appended to the spec's argv. */
  extraArgs?: string[];
}

export interface KernelExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines the kernel process wrote to its own stdout/stderr. */
  tail: string;
}

/** What a request the kernel is working on hears: its iopub messages and its shell reply. */
type Listener = (msg: JupyterMessage, channel: 'iopub' | 'shell') => void;

const TAIL_BYTES = 4096;

/** Five free TCP ports on 127.0.0.1 (the kernel binds them; a race with another binder is unlikely). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/**
 * One running Jupyter kernel: its process (started from its kernelspec with a connection
 * file, in a process group of its own) and this side's shell, control and iopub sockets.
 * Replies and iopub messages go to the listener of the request they answer (by
 * `parent_header.msg_id`). The kernel's death is its process's exit (`exited`).
 */
export class Kernel {
  readonly exited: Promise<KernelExit>;
  private exit: KernelExit | undefined;
  private readonly listeners = new Map<string, Listener>();
  private readonly exitListeners = new Set<(exit: KernelExit) => void>();
  private sending: Promise<unknown> = Promise.resolve();
  private tail = '';
  private held = false;

  private constructor(
    readonly spec: KernelSpec,
    private readonly child: ChildProcess,
    private readonly codec: MessageCodec,
    private readonly shell: Dealer,
    private readonly control: Dealer,
    private readonly iopub: Subscriber,
    private readonly connectionFile: string,
  ) {
    const keep = (chunk: Buffer) => {
      this.tail = (this.tail + chunk.toString('utf8')).slice(-TAIL_BYTES);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        const exit = { code, signal, tail: this.tail };
        this.exit = exit;
        this.close();
        for (const l of this.exitListeners) l(exit);
        this.exitListeners.clear();
        resolve(exit);
      });
    });
    void this.read(shell, 'shell');
    void this.read(iopub, 'iopub');
  }

  /** Starts a kernel; it is not ready until `waitReady` resolves. */
  static async start(options: KernelOptions): Promise<Kernel> {
    const [shell_port, iopub_port, stdin_port, control_port, hb_port] = await freePorts(5);
    const key = randomBytes(32).toString('hex');
    const connection = {
      ip: '127.0.0.1',
      transport: 'tcp',
      shell_port,
      iopub_port,
      stdin_port,
      control_port,
      hb_port,
      signature_scheme: 'hmac-sha256',
      key,
      kernel_name: options.spec.name,
    };
    const file = join(options.runtimeDir, `kernel-${randomUUID()}.json`);
    await writeFile(file, JSON.stringify(connection), { mode: 0o600 });
    const [cmd, ...args] = options.spec.argv.map((a) => a.replaceAll('{connection_file}', file));
    const child = spawn(cmd as string, [...args, ...(options.extraArgs ?? [])], {
      cwd: options.cwd,
      env: { ...options.env, ...options.spec.env },
      // A session of its own: an interrupt is SIGINT to the whole group, as jupyter_client does.
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e) => reject(new Error(`cannot start kernel ${options.spec.name}: ${e.message}`)));
    });
    // Out of memory, the kernel (and what it runs) goes first, not the server or envd.
    await writeFile(`/proc/${child.pid}/oom_score_adj`, '1000').catch(() => {});
    const url = (port: number | undefined) => `tcp://127.0.0.1:${port}`;
    const shell = new Dealer({ linger: 0 });
    const control = new Dealer({ linger: 0 });
    const iopub = new Subscriber({ linger: 0 });
    shell.connect(url(shell_port));
    control.connect(url(control_port));
    iopub.connect(url(iopub_port));
    iopub.subscribe();
    return new Kernel(options.spec, child, new MessageCodec(key), shell, control, iopub, file);
  }

  /** Calls `listener` if the kernel exits; returns what stops that. */
  onExit(listener: (exit: KernelExit) => void): () => void {
    if (this.exit) {
      listener(this.exit);
      return () => {};
    }
    this.exitListeners.add(listener);
    return () => this.exitListeners.delete(listener);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  private async read(socket: Dealer | Subscriber, channel: 'iopub' | 'shell'): Promise<void> {
    try {
      for await (const frames of socket) {
        let msg: JupyterMessage;
        try {
          msg = this.codec.decode(frames);
        } catch (e) {
          process.stderr.write(`code-interpreter: ${channel}: ${(e as Error).message}\n`);
          continue;
        }
        const parent = msg.parent_header.msg_id;
        if (parent) this.listeners.get(parent)?.(msg, channel);
      }
    } catch {
      // The socket was closed: the kernel is gone.
    }
  }

  /** Sends a request on shell (or control); `listener` hears what answers it until `forget`. */
  async send<C>(msgType: string, content: C, listener: Listener, channel: 'shell' | 'control' = 'shell') {
    if (!this.alive) throw new Error('the kernel is not running');
    const msg = this.codec.request(msgType, content);
    this.listeners.set(msg.header.msg_id, listener);
    const socket = channel === 'shell' ? this.shell : this.control;
    // zeromq allows one send in progress per socket.
    const sent = this.sending.then(() => socket.send(this.codec.encode(msg)));
    this.sending = sent.catch(() => {});
    await sent;
    return msg.header.msg_id;
  }

  forget(msgId: string): void {
    this.listeners.delete(msgId);
  }

  /**
   * Resolves once the kernel answers `kernel_info_request` on shell and its iopub
   * subscription is known to work (a status message of such a request arrived): a new
   * SUB socket misses what is published before it is joined.
   */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.alive) break;
      let id = '';
      const ok = await new Promise<boolean>((resolve) => {
        let replied = false;
        let heard = false;
        const timer = setTimeout(() => resolve(false), 1000);
        void this.send('kernel_info_request', {}, (_msg, channel) => {
          if (channel === 'shell') replied = true;
          else heard = true;
          if (replied && heard) {
            clearTimeout(timer);
            resolve(true);
          }
        })
          .then((msgId) => {
            id = msgId;
          })
          .catch(() => resolve(false));
        void this.exited.then(() => resolve(false));
      });
      this.forget(id);
      if (ok) return;
    }
    const exit = this.exit;
    await this.kill();
    throw new Error(
      exit
        ? `kernel ${this.spec.name} exited (${exit.signal ?? `code ${exit.code}`}) while starting: ${exit.tail.trim()}`
        : `kernel ${this.spec.name} did not answer within ${timeoutMs} ms`,
    );
  }

  /** Interrupts what the kernel runs, as its kernelspec says: SIGINT to its group, or a message. */
  async interrupt(): Promise<void> {
    if (!this.alive || this.child.pid === undefined) return;
    if (this.spec.interrupt_mode === 'message') {
      const id = await this.send('interrupt_request', {}, () => {}, 'control').catch(() => '');
      setTimeout(() => this.forget(id), 5000).unref();
      return;
    }
    this.hold(false);
    try {
      process.kill(-this.child.pid, 'SIGINT');
    } catch {
      // Already gone.
    }
  }

  /**
   * Stops (`true`) or continues (`false`) the kernel's whole process group: the only
   * backpressure there is on a kernel, whose iopub socket drops what a slow reader does
   * not take. A stopped kernel publishes nothing more; what it had sent still arrives.
   */
  hold(stopped: boolean): void {
    if (!this.alive || this.child.pid === undefined || this.held === stopped) return;
    this.held = stopped;
    try {
      process.kill(-this.child.pid, stopped ? 'SIGSTOP' : 'SIGCONT');
    } catch {
      // Already gone.
    }
  }

  /** Ends the kernel's process group (SIGKILL: a restart or removal keeps nothing of it). */
  async kill(): Promise<void> {
    if (this.alive && this.child.pid !== undefined) {
      try {
        process.kill(-this.child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await this.exited;
    }
    this.close();
  }

  private close(): void {
    for (const s of [this.shell, this.control, this.iopub]) if (!s.closed) s.close();
    this.listeners.clear();
    void rm(this.connectionFile, { force: true });
  }
}
