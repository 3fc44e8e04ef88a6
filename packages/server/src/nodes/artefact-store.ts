import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ARTEFACT_DIGEST_HEADER, CHECKPOINT_NAME_PATTERN, LAYER_HASH_PATTERN } from '@aiva/protocol/node';
import { replicaLinkQuery } from '../replicas/replica-links.js';
import { InvalidRequestError } from '../services/errors.js';

// The server's store of what nodes move between them (issue 17), one per kind: layers,
// `<home>/artefacts/layers/<hash>/{layer.tar,digest.json}`, content-addressed by the
// layer's hash; and checkpoints, `<home>/artefacts/checkpoints/<name>/{checkpoint.tar,
// digest.json}`, by name (a snapshot's id: a checkpoint never changes once made). An upload
// is written under `tmp/`, its sha256 checked against the digest its node gave, and only
// then is its directory renamed into place; a bad upload leaves nothing. The first complete
// copy stays (any two are the same artefact).

export type ArtefactKind = 'layers' | 'checkpoints';

const KINDS: Record<ArtefactKind, { file: string; pattern: RegExp; noun: string }> = {
  layers: { file: 'layer.tar', pattern: new RegExp(LAYER_HASH_PATTERN), noun: 'layer hash' },
  checkpoints: {
    file: 'checkpoint.tar',
    pattern: new RegExp(CHECKPOINT_NAME_PATTERN),
    noun: 'checkpoint name',
  },
};

export interface StoredArtefact {
  /** The layer's hash, the checkpoint's name. */
  hash: string;
  /** `sha256:<hex>` of the tar */
  digest: string;
  bytes: number;
  storedAt: string;
  /** The node that uploaded it. */
  from: string;
}

/** The largest tar the server takes (a Debian layer is a few hundred MB, a checkpoint its sandbox's memory and disk). */
export const ARTEFACT_UPLOAD_LIMIT = 32 * 1024 ** 3;

const DIGEST = /^sha256:[a-f0-9]{64}$/;

/** An upload larger than the limit. */
export class ArtefactTooLargeError extends Error {
  override name = 'ArtefactTooLargeError';
  /** The API reports it as a client error with this status. */
  readonly statusCode = 413;
}

/** The other server replicas, whose stores hold what nodes pushed to them. */
export interface ReplicaPeers {
  peers(): Promise<string[]>;
  sharedSecret(): Promise<Buffer>;
}

/** Where a replica serves an artefact of its own store to the others. */
export const replicaArtefactPath = (kind: ArtefactKind, hash: string) => `/v1/replica/${kind}/${hash}`;

export class ArtefactStore {
  readonly root: string;
  private readonly spec: (typeof KINDS)[ArtefactKind];

  constructor(
    home: string,
    readonly kind: ArtefactKind,
    private readonly replicas?: ReplicaPeers,
  ) {
    this.root = join(home, 'artefacts');
    this.spec = KINDS[kind];
  }

  /**
   * The artefact, if this store holds it, or once fetched from another server replica's
   * store (a node pushed it there), its digest checked as an upload's.
   */
  async find(hash: string): Promise<StoredArtefact | undefined> {
    const here = await this.get(hash);
    if (here || !this.replicas) return here;
    const path = replicaArtefactPath(this.kind, hash);
    for (const peer of await this.replicas.peers()) {
      try {
        const r = await fetch(`${peer}${path}?${replicaLinkQuery(await this.replicas.sharedSecret(), path)}`);
        const digest = r.headers.get(ARTEFACT_DIGEST_HEADER);
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
    return join(this.root, this.kind, hash);
  }

  private checkHash(hash: string): void {
    if (!this.spec.pattern.test(hash)) throw new InvalidRequestError(`${hash} is not a ${this.spec.noun}`);
  }

  /** The artefact, if the store holds it whole. */
  async get(hash: string): Promise<StoredArtefact | undefined> {
    this.checkHash(hash);
    try {
      return JSON.parse(await readFile(join(this.dir(hash), 'digest.json'), 'utf8')) as StoredArtefact;
    } catch {
      return undefined;
    }
  }

  open(hash: string): Readable {
    return createReadStream(join(this.dir(hash), this.spec.file));
  }

  async list(): Promise<string[]> {
    return readdir(join(this.root, this.kind)).catch(() => []);
  }

  /** Removes what the store holds of `hash`; false if nothing. */
  async remove(hash: string): Promise<boolean> {
    this.checkHash(hash);
    const held = (await this.get(hash)) !== undefined;
    await rm(this.dir(hash), { recursive: true, force: true });
    return held;
  }

  /** Removes what was stored more than `ms` ago; the names removed. */
  async removeOlderThan(ms: number): Promise<string[]> {
    const gone: string[] = [];
    for (const name of await this.list()) {
      const stored = await this.get(name).catch(() => undefined);
      if (stored && Date.now() - Date.parse(stored.storedAt) > ms) {
        await rm(this.dir(name), { recursive: true, force: true });
        gone.push(name);
      }
    }
    return gone;
  }

  /**
   * Stores `body` as `hash` if its sha256 is `digest` and it is at most `limit`
   * bytes; InvalidRequestError (nothing kept) if not. A hash already held is kept as it is.
   */
  async put(
    hash: string,
    digest: string,
    body: Readable,
    from: string,
    limit = ARTEFACT_UPLOAD_LIMIT,
  ): Promise<StoredArtefact> {
    this.checkHash(hash);
    if (!DIGEST.test(digest))
      throw new InvalidRequestError(`the digest must be sha256:<64 hex>, not ${digest}`);
    const tmp = join(this.root, 'tmp', `${hash}.${randomBytes(4).toString('hex')}`);
    await mkdir(tmp, { recursive: true });
    await mkdir(join(this.root, this.kind), { recursive: true });
    try {
      const sha256 = createHash('sha256');
      let bytes = 0;
      const counting = new Transform({
        transform(chunk: Buffer, _enc, done) {
          bytes += chunk.length;
          if (bytes > limit)
            return done(new ArtefactTooLargeError(`an upload may be at most ${limit} bytes`));
          sha256.update(chunk);
          done(null, chunk);
        },
      });
      await pipeline(body, counting, createWriteStream(join(tmp, this.spec.file))).catch(
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
          `${this.kind === 'layers' ? 'layer' : 'checkpoint'} ${hash.slice(0, 12)}: the upload's digest is ${got}, not ${digest}`,
        );
      const stored: StoredArtefact = { hash, digest, bytes, storedAt: new Date().toISOString(), from };
      await writeFile(join(tmp, 'digest.json'), `${JSON.stringify(stored, null, 2)}\n`);
      try {
        await rename(tmp, this.dir(hash));
      } catch (e) {
        // Another upload of the same artefact got there first: it is the same one.
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
