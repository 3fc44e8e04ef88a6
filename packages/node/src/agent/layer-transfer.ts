import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  type CommandResult,
  formatProtocol,
  LAYER_DIGEST_HEADER,
  NODE_PROTOCOL,
  NODE_PROTOCOL_HEADER,
  NODE_ROUTES,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { Artefacts } from '../image/artefacts.js';
import { packLayer, unpackLayer } from '../image/layer-archive.js';

// A node agent's side of moving layers (`artefact.push`, `artefact.fetch`): a layer of its
// store is packed to a tar in tmp/ (its digest known before it is sent) and PUT to the
// server's store; one it lacks is streamed from the server's store straight into tar,
// checked against the digest the server gives before it is renamed into place.

export interface LayerTransferOptions {
  serverUrl: string;
  credential(): string;
  artefacts: Artefacts;
  logger: Logger;
}

async function failed(r: Response, what: string): Promise<Error> {
  const text = await r.text().catch(() => '');
  let message = text;
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? text;
  } catch {}
  return new Error(`${what}: ${r.status} ${message}`);
}

export class LayerTransfer {
  constructor(private readonly options: LayerTransferOptions) {}

  private headers(): Record<string, string> {
    return {
      [NODE_PROTOCOL_HEADER]: formatProtocol(NODE_PROTOCOL),
      authorization: `Bearer ${this.options.credential()}`,
    };
  }

  private url(hash: string): URL {
    return new URL(`${NODE_ROUTES.layers}/${hash}`, this.options.serverUrl);
  }

  /** Uploads each of `layers` from this node's store to the server's. */
  async push(layers: string[], signal: AbortSignal): Promise<CommandResult<'artefact.push'>> {
    const { artefacts, logger } = this.options;
    const out: CommandResult<'artefact.push'>['layers'] = [];
    await mkdir(artefacts.paths.tmp, { recursive: true });
    for (const hash of new Set(layers)) {
      const file = join(artefacts.paths.tmp, `push-${hash}.${process.pid}-${Date.now()}.tar`);
      try {
        const { digest, bytes } = await packLayer(artefacts, hash, file, signal);
        const r = await fetch(this.url(hash), {
          method: 'PUT',
          headers: {
            ...this.headers(),
            'content-type': 'application/x-tar',
            'content-length': String(bytes),
            [LAYER_DIGEST_HEADER]: digest,
          },
          body: Readable.toWeb(createReadStream(file)) as ReadableStream,
          duplex: 'half',
          signal,
        } as RequestInit);
        if (!r.ok) throw await failed(r, `uploading layer ${hash.slice(0, 12)}`);
        await r.body?.cancel();
        logger.info({ layer: hash, bytes }, 'layer pushed to the server');
        out.push({ hash, digest, bytes });
      } finally {
        await rm(file, { force: true });
      }
    }
    return { layers: out };
  }

  /** Downloads those of `layers` this node lacks from the server's store. */
  async fetch(layers: string[], signal: AbortSignal): Promise<CommandResult<'artefact.fetch'>> {
    const { artefacts, logger } = this.options;
    const fetched: string[] = [];
    for (const hash of await artefacts.absentLayers([...new Set(layers)])) {
      const r = await fetch(this.url(hash), { headers: this.headers(), signal });
      if (!r.ok || !r.body) throw await failed(r, `downloading layer ${hash.slice(0, 12)}`);
      const digest = r.headers.get(LAYER_DIGEST_HEADER) ?? '';
      const source = Readable.fromWeb(r.body as never);
      try {
        if (await unpackLayer(artefacts, hash, source, digest, signal)) fetched.push(hash);
      } finally {
        source.destroy();
      }
      logger.info(
        { layer: hash, bytes: Number(r.headers.get('content-length') ?? 0) },
        'layer fetched from the server',
      );
    }
    return { fetched };
  }
}
