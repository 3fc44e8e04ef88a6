import type { BuildReporter } from '@aiva/node';

const BAR_WIDTH = 24;

function bar(done: number, total: number): string {
  const filled = total > 0 ? Math.min(BAR_WIDTH, Math.round((done / total) * BAR_WIDTH)) : 0;
  return `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
}

/**
 * Shows an image build on a terminal: one live line for the running step, redrawn at
 * most every 100 ms, and a line per finished step. Without a terminal (CI, logs) it
 * prints a line when a step starts, at every tenth of its progress, and when it ends.
 * With `verbose`, tools' output is printed as it comes.
 */
export class BuildProgress implements BuildReporter {
  private readonly tty: boolean;
  private titles = new Map<string, string>();
  private live = '';
  private lastDraw = 0;
  private lastTenth = new Map<string, number>();

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly verbose = false,
  ) {
    this.tty = Boolean(out.isTTY) && !verbose;
  }

  private clearLive(): void {
    if (this.tty && this.live) this.out.write('\r\x1b[2K');
    this.live = '';
  }

  private print(line: string): void {
    this.clearLive();
    this.out.write(`${line}\n`);
  }

  step(id: string, title: string, state: 'running' | 'cached'): void {
    this.titles.set(id, title);
    if (state === 'cached') this.print(`  ✓ ${title} (cached)`);
    else if (this.tty) this.draw(`  … ${title}`, true);
    else this.print(`  … ${title}`);
  }

  progress(id: string, done: number, total: number, detail?: string): void {
    const title = this.titles.get(id) ?? id;
    if (this.tty) {
      const cols = this.out.columns ?? 100;
      const line = `  … ${title} ${bar(done, total)} ${done}/${total} ${detail ?? ''}`;
      this.draw(line.length > cols - 1 ? `${line.slice(0, cols - 2)}…` : line, false);
      return;
    }
    const tenth = total > 0 ? Math.floor((done / total) * 10) : 0;
    if (tenth !== this.lastTenth.get(id)) {
      this.lastTenth.set(id, tenth);
      this.print(`    ${title}: ${done}/${total}${detail ? ` (${detail})` : ''}`);
    }
  }

  output(_id: string, line: string): void {
    if (this.verbose) this.print(`    | ${line}`);
  }

  finished(id: string, seconds: number): void {
    this.print(`  ✓ ${this.titles.get(id) ?? id} (${seconds.toFixed(1)} s)`);
  }

  private draw(line: string, force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    this.out.write(`\r\x1b[2K${line}`);
    this.live = line;
  }

  /** Ends the live line, e.g. before an error message. */
  close(): void {
    this.clearLive();
  }
}
