import { NodeCommandError, type NodeFailure } from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { LayerStore } from './layer-store.js';
import type { LayerSupplier, NodeClient } from './node-client.js';

// How a node gets the layers it answered MISSING_ARTEFACT for (issue 17): the server's
// store gets each one it lacks from a node whose snapshot lists it (`artefact.push`),
// then the node that needs them downloads them (`artefact.fetch`), and the command is
// tried once more. Layers no node holds are built by the node that needs them, when it
// can (a recipe's); otherwise the command fails.

const short = (hashes: string[]) => hashes.map((h) => h.slice(0, 12)).join(', ');

export class LayerSupply implements LayerSupplier {
  /** Uploads under way, by layer hash: a second request for the same layer waits for the first. */
  private readonly uploading = new Map<string, Promise<void>>();

  constructor(
    private readonly nodes: () => NodeClient[],
    private readonly store: LayerStore,
    private readonly log: Logger,
  ) {}

  async supply(target: NodeClient, failure: NodeFailure): Promise<'fetched' | 'build'> {
    const details = failure.details ?? {};
    const layers = Array.isArray(details.layers)
      ? details.layers.filter((l): l is string => typeof l === 'string')
      : [];
    if (layers.length === 0) throw new NodeCommandError(failure);
    const absent: string[] = [];
    for (const hash of layers) if (!(await this.store.find(hash))) absent.push(hash);
    const holders = await this.holders(target, absent);
    const unheld = absent.filter((h) => !holders.has(h));
    if (unheld.length > 0) {
      if (details.buildable === true) {
        this.log.info(
          { node: target.id, layers: unheld },
          `no node holds layer(s) ${short(unheld)}: node ${target.id} builds them`,
        );
        return 'build';
      }
      throw new NodeCommandError({
        code: 'MISSING_ARTEFACT',
        message: `${failure.message}; no node holds layer(s) ${short(unheld)}`,
        details: { layers: unheld },
      });
    }
    const byHolder = new Map<NodeClient, string[]>();
    for (const [hash, holder] of holders) byHolder.set(holder, [...(byHolder.get(holder) ?? []), hash]);
    await Promise.all([...byHolder].map(([holder, hashes]) => this.upload(holder, hashes)));
    this.log.info(
      { node: target.id, layers },
      `node ${target.id} fetches layer(s) ${short(layers)} from the server's store`,
    );
    const { fetched } = await target.fetchLayers(layers).catch((e: Error) => {
      this.log.warn(
        { node: target.id, layers, err: e.message },
        `node ${target.id} could not fetch its layers`,
      );
      throw e;
    });
    this.log.info({ node: target.id, fetched }, `node ${target.id} fetched ${fetched.length} layer(s)`);
    return 'fetched';
  }

  /** For each of `hashes`, a node other than `target` whose last snapshot lists it. */
  private async holders(target: NodeClient, hashes: string[]): Promise<Map<string, NodeClient>> {
    const found = new Map<string, NodeClient>();
    if (hashes.length === 0) return found;
    const others = this.nodes().filter((n) => n.id !== target.id);
    const snapshots = await Promise.all(others.map((n) => n.link.snapshot().catch(() => undefined)));
    for (const hash of hashes)
      for (const [i, s] of snapshots.entries())
        if (s?.artefacts.layers?.includes(hash)) {
          found.set(hash, others[i] as NodeClient);
          break;
        }
    return found;
  }

  /** Has `holder` push `hashes` to the server's store (once per hash at a time). */
  private async upload(holder: NodeClient, hashes: string[]): Promise<void> {
    const waiting = hashes.flatMap((h) => {
      const p = this.uploading.get(h);
      return p ? [p] : [];
    });
    const mine = hashes.filter((h) => !this.uploading.has(h));
    if (mine.length > 0) {
      this.log.info(
        { node: holder.id, layers: mine },
        `the server's store gets layer(s) ${short(mine)} from node ${holder.id}`,
      );
      const push = holder.pushLayers(mine).then((r) => {
        this.log.info(
          { node: holder.id, layers: r.layers },
          `node ${holder.id} pushed ${r.layers.length} layer(s)`,
        );
      });
      const settled = push.catch(() => {});
      for (const h of mine) this.uploading.set(h, settled);
      try {
        await push;
      } finally {
        for (const h of mine) if (this.uploading.get(h) === settled) this.uploading.delete(h);
      }
    }
    await Promise.all(waiting);
    for (const h of hashes)
      if (!(await this.store.find(h)))
        throw new NodeCommandError({
          code: 'MISSING_ARTEFACT',
          message: `node ${holder.id} did not upload layer ${h.slice(0, 12)} to the server's store`,
          details: { layers: [h] },
        });
  }
}
