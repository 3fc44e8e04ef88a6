import { ENVD_KEEPALIVE_HEADER } from '@aiva/protocol';
import { Code, ConnectError } from '@connectrpc/connect';

/**
 * An unbounded single-consumer queue of stream events, read with `drain()`: it yields
 * queued items in order, a keepalive item whenever nothing came for the keepalive
 * interval, and stops when the queue is closed (after the last item) or throws when the
 * request is aborted (client gone, deadline) or the queue is failed.
 */
export class EventQueue<T> {
  private items: T[] = [];
  private closed = false;
  private failure: unknown;
  private wake: (() => void) | undefined;
  /** Called after the consumer took an item (for back-pressure). */
  onTake: (() => void) | undefined;

  get length(): number {
    return this.items.length;
  }

  push(item: T): void {
    if (this.closed) return;
    this.items.push(item);
    this.notify();
  }

  close(): void {
    this.closed = true;
    this.notify();
  }

  fail(err: unknown): void {
    this.failure ??= err;
    this.close();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  async *drain(signal: AbortSignal, keepalive?: { intervalMs: number; item: () => T }): AsyncGenerator<T> {
    for (;;) {
      if (signal.aborted) throw ConnectError.from(signal.reason, Code.Canceled);
      const next = this.items.shift();
      if (next !== undefined) {
        this.onTake?.();
        yield next;
        continue;
      }
      if (this.closed) {
        if (this.failure !== undefined) throw this.failure;
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      let timedOut = false;
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener('abort', done);
          if (timer) clearTimeout(timer);
          resolve();
        };
        this.wake = done;
        signal.addEventListener('abort', done);
        if (keepalive && keepalive.intervalMs > 0) {
          timer = setTimeout(() => {
            timedOut = true;
            done();
          }, keepalive.intervalMs);
        }
      });
      this.wake = undefined;
      if (timedOut && keepalive && this.items.length === 0 && !this.closed && !signal.aborted) {
        yield keepalive.item();
      }
    }
  }
}

/** The keepalive interval a client asked for (`Keepalive-Ping-Interval`, seconds). */
export function keepaliveIntervalMs(headers: Headers): number {
  const v = Number(headers.get(ENVD_KEEPALIVE_HEADER));
  return Number.isFinite(v) && v > 0 ? v * 1000 : 0;
}
