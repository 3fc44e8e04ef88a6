import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { filesystem as fsp } from '@aiva/protocol';

const EVENT_TYPES: Record<string, fsp.EventType> = {
  CREATE: fsp.EventType.CREATE,
  WRITE: fsp.EventType.WRITE,
  REMOVE: fsp.EventType.REMOVE,
  RENAME: fsp.EventType.RENAME,
  CHMOD: fsp.EventType.CHMOD,
};

export interface RawWatchEvent {
  /** Relative to the watched directory. */
  name: string;
  type: fsp.EventType;
}

/**
 * An inotify watch of one directory (and, if recursive, of every directory below it,
 * including ones created later), run by the native helper. Node 18's fs.watch has no
 * recursive mode on Linux and cannot tell a rename from a removal.
 */
export class DirWatcher {
  private child: ChildProcess | undefined;
  private stopped = false;
  private ended = false;

  constructor(
    private readonly helper: string,
    readonly dir: string,
    readonly recursive: boolean,
    private readonly onEvent: (e: RawWatchEvent) => void,
    /** Called once when the watch ends by itself: the directory went away or the helper failed. */
    private readonly onEnd: (error?: Error) => void,
  ) {}

  /** Resolves once the watch is in place (events from then on are reported). */
  start(): Promise<void> {
    const args = ['watch', ...(this.recursive ? ['--recursive'] : []), this.dir];
    const child = spawn(this.helper, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    child.stdin?.on('error', () => {});
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    return new Promise((resolve, reject) => {
      let started = false;
      const end = (error?: Error) => {
        if (this.ended) return;
        this.ended = true;
        if (!started) reject(error ?? new Error('watch ended before it started'));
        else if (!this.stopped) this.onEnd(error);
      };
      child.once('error', (e) => end(e));
      const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
      lines.on('line', (line) => {
        if (line === 'S') {
          started = true;
          resolve();
          return;
        }
        if (line === 'X') return end();
        const [kind = '', hex = ''] = line.split('\t');
        if (kind === 'E') {
          process.stderr.write(`envd: watch of ${this.dir}: ${hex} (events were lost)\n`);
          return;
        }
        const type = EVENT_TYPES[kind];
        if (type !== undefined) this.onEvent({ name: Buffer.from(hex, 'hex').toString('utf8'), type });
      });
      child.once('close', (code, signal) => {
        if (code === 0 || this.stopped) end();
        else
          end(
            new Error(stderr.trim().replace(/^aiva-exec: /, '') || `watch helper ended (${code ?? signal})`),
          );
      });
    });
  }

  /** Ends the watch; the helper exits when its stdin closes (SIGKILL if it does not). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.stdin?.end();
    const t = setTimeout(() => child.kill('SIGKILL'), 1000);
    t.unref();
    child.once('exit', () => clearTimeout(t));
  }
}
