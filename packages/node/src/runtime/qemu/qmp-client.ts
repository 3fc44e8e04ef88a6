import { connect, type Socket } from 'node:net';

export class QmpError extends Error {
  override name = 'QmpError';
  constructor(
    readonly command: string,
    readonly errorClass: string,
    description: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${description}`);
  }
}

export type QmpEvent = { event: string; data?: unknown; timestamp?: unknown };

/**
 * A client of QEMU's machine protocol over its unix socket: one JSON object per line,
 * a greeting, `qmp_capabilities`, then commands answered in order with `return` or
 * `error`, interleaved with asynchronous events.
 */
export class QmpClient {
  private buffer = '';
  private pending: { command: string; resolve: (v: unknown) => void; reject: (e: Error) => void }[] = [];
  private closedError: Error | undefined;
  readonly events: QmpEvent[] = [];

  private constructor(private readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => this.fail(new Error('QMP connection closed')));
    socket.on('error', (e) => this.fail(e));
  }

  /** Connects, reads the greeting and negotiates capabilities. */
  static async connect(path: string, timeoutMs = 5000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await QmpClient.connectOnce(path, Math.max(1, deadline - Date.now()));
      } catch (e) {
        // QEMU makes its socket's file (bind) a moment before it listens: a refusal then
        // means not yet. One that lasts to the deadline is the error.
        if ((e as NodeJS.ErrnoException).code !== 'ECONNREFUSED' || Date.now() >= deadline) throw e;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private static async connectOnce(path: string, timeoutMs: number): Promise<QmpClient> {
    const socket = connect(path);
    const client = new QmpClient(socket);
    const greeting = new Promise<void>((resolve, reject) => {
      client.pending.push({ command: '(greeting)', resolve: () => resolve(), reject });
    });
    const timer = setTimeout(
      () => socket.destroy(new Error(`no QMP greeting on ${path} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    try {
      await greeting;
      await client.execute('qmp_capabilities');
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return client;
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    let nl = this.buffer.indexOf('\n');
    while (nl >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      nl = this.buffer.indexOf('\n');
      if (!line) continue;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line);
      } catch {
        this.fail(new Error(`QMP sent something that is not JSON: ${line.slice(0, 200)}`));
        return;
      }
      if ('event' in msg) {
        this.events.push(msg as QmpEvent);
        continue;
      }
      const waiter = this.pending.shift();
      if (!waiter) continue;
      if ('QMP' in msg || 'return' in msg) waiter.resolve(msg.return);
      else {
        const err = (msg.error ?? {}) as { class?: string; desc?: string };
        waiter.reject(new QmpError(waiter.command, err.class ?? 'Unknown', err.desc ?? JSON.stringify(msg)));
      }
    }
  }

  private fail(e: Error): void {
    this.closedError ??= e;
    for (const w of this.pending.splice(0)) w.reject(e);
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ command, resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(
        `${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`,
      );
    });
  }

  close(): void {
    this.socket.end();
    this.socket.destroy();
  }
}

/** Connects to `path`, runs `fn`, and closes the connection whatever happens. */
export async function withQmp<T>(path: string, fn: (qmp: QmpClient) => Promise<T>): Promise<T> {
  const qmp = await QmpClient.connect(path);
  try {
    return await fn(qmp);
  } finally {
    qmp.close();
  }
}
