import { NodeCommandError, type NodeFailure, type NodeSnapshot } from '@aiva/protocol/node';
import type { Logger } from 'pino';
import { CapacityError } from '../services/errors.js';
import type { ArtefactKind, ArtefactStore } from './artefact-store.js';
import type { ArtefactSupplier, NodeClient } from './node-client.js';

// How a node gets the layers and checkpoints it answered MISSING_ARTEFACT for (issue 17):
// the server's store gets each one it lacks from a node whose snapshot lists it
// (`artefact.push`), then the node that needs them downloads them (`artefact.fetch`), and
// the command is tried again. Layers no node holds are built by the node that needs them,
// when it can (a recipe's); otherwise the command fails. A checkpoint no reachable node
// holds and the store lacks is a 503: its node may come back.

const short = (names: string[]) => names.map((h) => h.slice(0, 12)).join(', ');

type Wanted = Record<ArtefactKind, string[]>;

const strings = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((l): l is string => typeof l === 'string') : [];

/** Whether a node's snapshot lists the artefact. */
function holds(s: NodeSnapshot | undefined, kind: ArtefactKind, name: string): boolean {
  if (!s) return false;
  return kind === 'layers'
    ? (s.artefacts.layers?.includes(name) ?? false)
    : s.checkpoints.some((c) => c.name === name);
}

export class ArtefactSupply implements ArtefactSupplier {
  /** Uploads under way, by kind and name: a second request for the same one waits for the first. */
  private readonly uploading = new Map<string, Promise<void>>();

  constructor(
    private readonly nodes: () => NodeClient[],
    private readonly stores: Record<ArtefactKind, ArtefactStore>,
    private readonly log: Logger,
  ) {}

  async supply(target: NodeClient, failure: NodeFailure): Promise<'fetched' | 'build'> {
    const details = failure.details ?? {};
    const wanted: Wanted = { layers: strings(details.layers), checkpoints: strings(details.checkpoints) };
    if (wanted.layers.length + wanted.checkpoints.length === 0) throw new NodeCommandError(failure);
    const holders = new Map<NodeClient, Wanted>();
    const unheld: Wanted = { layers: [], checkpoints: [] };
    const others = this.nodes().filter((n) => n.id !== target.id);
    const snapshots = await Promise.all(others.map((n) => n.link.snapshot().catch(() => undefined)));
    for (const kind of ['layers', 'checkpoints'] as const)
      for (const name of wanted[kind]) {
        if (await this.stores[kind].find(name)) continue;
        const i = snapshots.findIndex((s) => holds(s, kind, name));
        const holder = others[i];
        if (!holder) {
          unheld[kind].push(name);
          continue;
        }
        const w = holders.get(holder) ?? { layers: [], checkpoints: [] };
        w[kind].push(name);
        holders.set(holder, w);
      }
    if (unheld.checkpoints.length > 0)
      throw new CapacityError(
        `${failure.message}; no reachable node holds checkpoint ${unheld.checkpoints.join(', ')} and the server's store has no copy (is its node down?)`,
      );
    if (unheld.layers.length > 0) {
      if (details.buildable === true) {
        this.log.info(
          { node: target.id, layers: unheld.layers },
          `no node holds layer(s) ${short(unheld.layers)}: node ${target.id} builds them`,
        );
        return 'build';
      }
      throw new NodeCommandError({
        code: 'MISSING_ARTEFACT',
        message: `${failure.message}; no node holds layer(s) ${short(unheld.layers)}`,
        details: { layers: unheld.layers },
      });
    }
    await Promise.all([...holders].map(([holder, w]) => this.upload(holder, w)));
    const all = [...wanted.layers, ...wanted.checkpoints];
    this.log.info(
      { node: target.id, ...wanted },
      `node ${target.id} fetches ${short(all)} from the server's store`,
    );
    const fetched = await target.fetchArtefacts(wanted).catch((e: Error) => {
      this.log.warn({ node: target.id, ...wanted, err: e.message }, `node ${target.id} could not fetch them`);
      throw e;
    });
    this.log.info(
      { node: target.id, fetched: fetched.fetched, checkpoints: fetched.checkpoints },
      `node ${target.id} fetched ${fetched.fetched.length} layer(s), ${fetched.checkpoints?.length ?? 0} checkpoint(s)`,
    );
    return 'fetched';
  }

  async forgetCheckpoint(name: string): Promise<void> {
    await this.stores.checkpoints.remove(name);
  }

  /** Has `holder` push `w` to the server's store (once per artefact at a time). */
  private async upload(holder: NodeClient, w: Wanted): Promise<void> {
    const key = (kind: ArtefactKind, name: string) => `${kind}/${name}`;
    const waiting: Promise<void>[] = [];
    const mine: Wanted = { layers: [], checkpoints: [] };
    for (const kind of ['layers', 'checkpoints'] as const)
      for (const name of w[kind]) {
        const p = this.uploading.get(key(kind, name));
        if (p) waiting.push(p);
        else mine[kind].push(name);
      }
    const keys = [
      ...mine.layers.map((n) => key('layers', n)),
      ...mine.checkpoints.map((n) => key('checkpoints', n)),
    ];
    if (keys.length > 0) {
      this.log.info(
        { node: holder.id, ...mine },
        `the server's store gets ${short([...mine.layers, ...mine.checkpoints])} from node ${holder.id}`,
      );
      const push = holder.pushArtefacts(mine).then((r) => {
        this.log.info(
          { node: holder.id, layers: r.layers, checkpoints: r.checkpoints },
          `node ${holder.id} pushed ${r.layers.length} layer(s), ${r.checkpoints?.length ?? 0} checkpoint(s)`,
        );
      });
      const settled = push.catch(() => {});
      for (const k of keys) this.uploading.set(k, settled);
      try {
        await push;
      } finally {
        for (const k of keys) if (this.uploading.get(k) === settled) this.uploading.delete(k);
      }
    }
    await Promise.all(waiting);
    for (const kind of ['layers', 'checkpoints'] as const)
      for (const name of w[kind])
        if (!(await this.stores[kind].find(name)))
          throw new NodeCommandError({
            code: 'MISSING_ARTEFACT',
            message: `node ${holder.id} did not upload ${kind === 'layers' ? 'layer' : 'checkpoint'} ${name.slice(0, 12)} to the server's store`,
            details: { [kind]: [name] },
          });
  }
}
