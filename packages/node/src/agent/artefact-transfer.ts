import { createReadStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import {
  ARTEFACT_DIGEST_HEADER,
  type CommandPayload,
  type CommandResult,
  formatProtocol,
  NODE_PROTOCOL,
  NODE_PROTOCOL_HEADER,
  NODE_ROUTES,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';
import type { Artefacts } from '../image/artefacts.js';
import { packLayer, unpackLayer } from '../image/layer-archive.js';
import { packCheckpoint, unpackCheckpoint } from '../sandbox/checkpoint-archive.js';
import type { CheckpointStore } from '../sandbox/checkpoint-store.js';

// A node agent's side of moving layers and checkpoints (`artefact.push`, `artefact.fetch`):
// one of its store is packed to a tar in tmp/ (its digest known before it is sent) and PUT
// to the server's store; one it lacks is streamed from the server's store straight into
// tar, checked against the digest the server gives before it is renamed into place.

export interface ArtefactTransferOptions {
  serverUrl: string;
  credential(): string;
  artefacts: Artefacts;
  checkpoints: CheckpointStore;
  logger: Logger;
}

type Kind = 'layers' | 'checkpoints';

async function failed(r: Response, what: string): Promise<Error> {
  const text = await r.text().catch(() => '');
  let message = text;
  try {
    message = (JSON.parse(text) as { message?: string }).message ?? text;
  } catch {}
  return new Error(`${what}: ${r.status} ${message}`);
}

const noun = (kind: Kind, name: string) =>
  `${kind === 'layers' ? 'layer' : 'checkpoint'} ${name.slice(0, 12)}`;

export class ArtefactTransfer {
  constructor(private readonly options: ArtefactTransferOptions) {}

  private headers(): Record<string, string> {
    return {
      [NODE_PROTOCOL_HEADER]: formatProtocol(NODE_PROTOCOL),
      authorization: `Bearer ${this.options.credential()}`,
    };
  }

  private url(kind: Kind, name: string): URL {
    return new URL(`${NODE_ROUTES[kind]}/${name}`, this.options.serverUrl);
  }

  /** Uploads each of the layers and checkpoints from this node's stores to the server's. */
  async push(
    p: CommandPayload<'artefact.push'>,
    signal: AbortSignal,
  ): Promise<CommandResult<'artefact.push'>> {
    const { artefacts, checkpoints } = this.options;
    const pack = {
      layers: (name: string, file: string) => packLayer(artefacts, name, file, signal),
      checkpoints: (name: string, file: string) => packCheckpoint(checkpoints, name, file, signal),
    };
    const out: CommandResult<'artefact.push'> = { layers: [], checkpoints: [] };
    await mkdir(artefacts.paths.tmp, { recursive: true });
    for (const kind of ['layers', 'checkpoints'] as const)
      for (const name of new Set(p[kind] ?? [])) {
        const file = join(artefacts.paths.tmp, `push-${name}.${process.pid}-${Date.now()}.tar`);
        try {
          const { digest, bytes } = await pack[kind](name, file);
          await this.upload(kind, name, file, digest, bytes, signal);
          if (kind === 'layers') out.layers.push({ hash: name, digest, bytes });
          else out.checkpoints?.push({ name, digest, bytes });
        } finally {
          await rm(file, { force: true });
        }
      }
    return out;
  }

  private async upload(
    kind: Kind,
    name: string,
    file: string,
    digest: string,
    bytes: number,
    signal: AbortSignal,
  ) {
    const r = await fetch(this.url(kind, name), {
      method: 'PUT',
      headers: {
        ...this.headers(),
        'content-type': 'application/x-tar',
        'content-length': String(bytes),
        [ARTEFACT_DIGEST_HEADER]: digest,
      },
      body: Readable.toWeb(createReadStream(file)) as ReadableStream,
      duplex: 'half',
      signal,
    } as RequestInit);
    if (!r.ok) throw await failed(r, `uploading ${noun(kind, name)}`);
    await r.body?.cancel();
    this.options.logger.info({ [kind]: name, bytes }, `${noun(kind, name)} pushed to the server`);
  }

  /** Downloads those of the layers and checkpoints this node lacks from the server's store. */
  async fetch(
    p: CommandPayload<'artefact.fetch'>,
    signal: AbortSignal,
  ): Promise<CommandResult<'artefact.fetch'>> {
    const { artefacts, checkpoints } = this.options;
    const fetched: string[] = [];
    for (const hash of await artefacts.absentLayers([...new Set(p.layers)]))
      if (
        await this.download(
          'layers',
          hash,
          (source, digest) => unpackLayer(artefacts, hash, source, digest, signal),
          signal,
        )
      )
        fetched.push(hash);
    const cps: string[] = [];
    for (const name of new Set(p.checkpoints ?? []))
      if (
        !(await checkpoints.find(name)) &&
        (await this.download(
          'checkpoints',
          name,
          (source, digest) => unpackCheckpoint(checkpoints, name, source, digest, signal),
          signal,
        ))
      )
        cps.push(name);
    return { fetched, checkpoints: cps };
  }

  private async download(
    kind: Kind,
    name: string,
    unpack: (source: Readable, digest: string) => Promise<boolean>,
    signal: AbortSignal,
  ): Promise<boolean> {
    const r = await fetch(this.url(kind, name), { headers: this.headers(), signal });
    if (!r.ok || !r.body) throw await failed(r, `downloading ${noun(kind, name)}`);
    const digest = r.headers.get(ARTEFACT_DIGEST_HEADER) ?? '';
    const source = Readable.fromWeb(r.body as never);
    try {
      const got = await unpack(source, digest);
      this.options.logger.info(
        { [kind]: name, bytes: Number(r.headers.get('content-length') ?? 0) },
        `${noun(kind, name)} fetched from the server`,
      );
      return got;
    } finally {
      source.destroy();
    }
  }
}
