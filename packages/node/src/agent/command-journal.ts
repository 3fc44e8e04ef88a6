import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { NodeCommandOutcome } from '@aiva/protocol/node';

// A node agent's record of the commands it was given, on disk, so that a command
// delivered again — after the server missed the outcome, or after the agent restarted —
// is answered and never run twice.

type Entry =
  | { state: 'running'; kind: string }
  | { state: 'done'; kind: string; outcome: NodeCommandOutcome };

/** How long an answered command is remembered. */
const KEPT_MS = 24 * 3600_000;

export class CommandJournal {
  constructor(readonly dir: string) {}

  private file(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  private async write(id: string, entry: Entry): Promise<void> {
    const tmp = `${this.file(id)}.tmp`;
    await writeFile(tmp, JSON.stringify(entry));
    await rename(tmp, this.file(id));
  }

  /**
   * Opens the journal: commands a previous run left running are answered INTERRUPTED
   * (what they had made was undone by the node's recovery), and answers older than a day go.
   * Returns the outcomes the server may not have had yet.
   */
  async open(): Promise<NodeCommandOutcome[]> {
    await mkdir(this.dir, { recursive: true });
    const unsent: NodeCommandOutcome[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (!name.endsWith('.json')) {
        await rm(path, { force: true });
        continue;
      }
      const id = name.slice(0, -'.json'.length);
      const entry = await this.get(id);
      if (entry?.state === 'running') {
        const outcome: NodeCommandOutcome = {
          commandId: id,
          ok: false,
          error: { code: 'INTERRUPTED', message: 'the node agent restarted while the command ran' },
        };
        await this.write(id, { state: 'done', kind: entry.kind, outcome });
        unsent.push(outcome);
      } else if (!entry || Date.now() - (await stat(path)).mtimeMs > KEPT_MS) await rm(path, { force: true });
    }
    return unsent;
  }

  async get(id: string): Promise<Entry | undefined> {
    try {
      return JSON.parse(await readFile(this.file(id), 'utf8')) as Entry;
    } catch {
      return undefined;
    }
  }

  started(id: string, kind: string): Promise<void> {
    return this.write(id, { state: 'running', kind });
  }

  done(id: string, kind: string, outcome: NodeCommandOutcome): Promise<void> {
    return this.write(id, { state: 'done', kind, outcome });
  }
}
