import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LAYER_DIGEST_HEADER, LAYER_HASH_PATTERN } from '@aiva/protocol/node';
import { replicaLinkQuery } from '../replicas/replica-links.js';
import { InvalidRequestError } from '../services/errors.js';

// The server's store of layers, for nodes to fetch what they lack (issue 17):
// `<home>/artefacts/layers/<hash>/{layer.tar,digest.json}`, content-addressed by the
// layer's hash. An upload is written under `tmp/`, its sha256 checked against the digest
// its node gave, and only then is its directory renamed into place; a bad upload leaves
// nothing. The first complete copy of a hash stays (any two are the same layer).

export interface StoredLayer {
  hash: string;
  /** `sha256:<hex>` of layer.tar */
  digest: string;
  bytes: number;
  storedAt: string;
  /** The node that uploaded it. */
  from: string;
}

/** The largest layer tar the server takes (a Debian layer is a few hundred MB). */
export const LAYER_UPLOAD_LIMIT = 8 * 1024 ** 3;

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** An upload larger than the limit. */
export class LayerTooLargeError extends Error {
  override name = 'LayerTooLargeError';
  /** The API reports it as a client error with this status. */
  readonly statusCode = 413;
}

/** The other server replicas, whose stores hold what nodes pushed to them. */
export interface ReplicaPeers {
  peers(): Promise<string[]>;
  sharedSecret(): Promise<Buffer>;
}

/** Where a replica serves a layer of its own store to the others. */
export const replicaLayerPath = (hash: string) => `/v1/replica/layers/${hash}`;

export class LayerStore {
  readonly root: string;

  constructor(
    home: string,
    private readonly replicas?: ReplicaPeers,
  ) {
    this.root = join(home, 'artefacts');
  }

  /**
   * The layer, if this store holds it, or once fetched from another server replica's
   * store (a node pushed it there), its digest checked as an upload's.
   */
  async find(hash: string): Promise<StoredLayer | undefined> {
    const here = await this.get(hash);
    if (here || !this.replicas) return here;
    const path = replicaLayerPath(hash);
    for (const peer of await this.replicas.peers()) {
      try {
        const r = await fetch(`${peer}${path}?${replicaLinkQuery(await this.replicas.sharedSecret(), path)}`);
        const digest = r.headers.get(LAYER_DIGEST_HEADER);
        if (r.status !== 200 || !r.body || !digest) {
          await r.body?.cancel();
          continue;
        }
        return await this.put(hash, digest, Readable.fromWeb(r.body as never), `replica ${peer}`);
      } catch {
        // The next replica, if any.
      }
    }
    return undefined;
  }

  private dir(hash: string): string {
    return join(this.root, 'layers', hash);
  }

  static checkHash(hash: string): void {
    if (!new RegExp(LAYER_HASH_PATTERN).test(hash))
      throw new InvalidRequestError(`${hash} is not a layer hash`);
  }

  /** The layer, if the store holds it whole. */
  async get(hash: string): Promise<StoredLayer | undefined> {
    LayerStore.checkHash(hash);
    try {
      return JSON.parse(await readFile(join(this.dir(hash), 'digest.json'), 'utf8')) as StoredLayer;
    } catch {
      return undefined;
    }
  }

  open(hash: string): Readable {
    return createReadStream(join(this.dir(hash), 'layer.tar'));
  }

  async list(): Promise<string[]> {
    return readdir(join(this.root, 'layers')).catch(() => []);
  }

  /**
   * Stores `body` as layer `hash` if its sha256 is `digest` and it is at most `limit`
   * bytes; InvalidRequestError (nothing kept) if not. A hash already held is kept as it is.
   */
  async put(
    hash: string,
    digest: string,
    body: Readable,
    from: string,
    limit = LAYER_UPLOAD_LIMIT,
  ): Promise<StoredLayer> {
    LayerStore.checkHash(hash);
    if (!DIGEST.test(digest))
      throw new InvalidRequestError(`the digest must be sha256:<64 hex>, not ${digest}`);
    const tmp = join(this.root, 'tmp', `${hash}.${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { recursive: true });
    await mkdir(join(this.root, 'layers'), { recursive: true });
    try {
      const sha256 = createHash('sha256');
      let bytes = 0;
      const counting = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          if (bytes > limit) return done(new LayerTooLargeError(`a layer may be at most ${limit} bytes`));
          sha256.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(body, counting, createWriteStream(join(tmp, 'layer.tar'))).catch(
        (e: NodeJS.ErrnoException) => {
          // A body that is not the gzip it says it is.
          if (e.code?.startsWith('Z_'))
            throw new InvalidRequestError(`the upload is not valid gzip: ${e.message}`);
          throw e;
        },
      );
      const got = `sha256:${sha256.digest('hex')}`;
      if (got !== digest)
        throw new InvalidRequestError(
          `layer ${hash.slice(0, 12)}: the upload's digest is ${got}, not ${digest}`,
        );
      const stored: StoredLayer = { hash, digest, bytes, storedAt: new Date().toISOString(), from };
      await writeFile(join(tmp, 'digest.json'), `${JSON.stringify(stored, null, 2)}\n`);
      try {
        await rename(tmp, this.dir(hash));
      } catch (e) {
        // Another upload of the same layer got there first: it is the same layer.
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
        return (await this.get(hash)) ?? stored;
      }
      return stored;
    } finally {
      await rm(tmp, { recursive: true, force: true });
    }
  }

  /** Removes uploads a server that stopped mid-way left in tmp/. */
  async sweepTmp(): Promise<void> {
    await rm(join(this.root, 'tmp'), { recursive: true, force: true });
  }
}
