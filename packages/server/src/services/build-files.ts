import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { runCommand } from '@aiva/node';
import type { Logger } from 'pino';
import { replicaLinkQuery } from '../replicas/replica-links.js';
import { InvalidRequestError, NotFoundError } from './errors.js';

/** The largest upload of a COPY step's files. */
const MAX_UPLOAD_BYTES = 2 * 1024 ** 3;
/** How long an upload link works. */
const UPLOAD_LINK_MS = 3_600_000;

/** Where a replica serves a file uploaded to it to the others (a link signed by `replicaLinkQuery`). */
export const replicaBuildFilePath = (teamId: string, hash: string) =>
  `/v1/replica/template-files/${teamId}/${hash}`;

/** Where a team's uploaded build files (a COPY step's, an image archive) are kept, by hash. */
export function uploadedFile(home: string, teamId: string, hash: string): string {
  return join(home, 'template-files', teamId, `${hash}.tar.gz`);
}

export interface BuildFilesOptions {
  home: string;
  log: Logger;
  /** What links are signed with: the replicas' shared secret (default: this process's own). */
  secret?: Buffer;
  /** The other replicas' URLs: a file uploaded to one of them is fetched from it when needed here. */
  peers?: () => Promise<string[]>;
}

/**
 * The files template builds read (a COPY step's, an image archive), uploaded to links the
 * server signs and kept under `<home>/template-files/<team>/<hash>.tar.gz`. With server
 * replicas an upload lands on one of them; the others fetch it from there when a build,
 * a node or the SDK asks (`replicaBuildFilePath`, a link of `replicas/replica-links.ts`).
 */
export class BuildFiles {
  private readonly secret: Buffer;

  constructor(private readonly o: BuildFilesOptions) {
    this.secret = o.secret ?? randomBytes(32);
  }

  path(teamId: string, hash: string): string {
    return uploadedFile(this.o.home, teamId, hash);
  }

  private sign(teamId: string, hash: string, expires: number): string {
    return createHmac('sha256', this.secret).update(`upload/${teamId}/${hash}/${expires}`).digest('hex');
  }

  /** The team an upload link is for; InvalidRequestError if it is not one this server signed, or expired. */
  private check(hash: string, q: SignedQuery): string {
    const { team, expires, signature } = q;
    const exp = Number(expires);
    const want = team && Number.isFinite(exp) ? Buffer.from(this.sign(team, hash, exp)) : undefined;
    const got = Buffer.from(signature ?? '');
    if (!team || !want || want.length !== got.length || !timingSafeEqual(want, got))
      throw new InvalidRequestError('the upload link is not valid');
    if (exp < Date.now()) throw new InvalidRequestError('the upload link has expired: ask for a new one');
    return team;
  }

  /** Whether the team's file is here, or could be fetched here from the replica that took it. */
  async has(teamId: string, hash: string): Promise<boolean> {
    return (await this.local(teamId, hash)) !== undefined;
  }

  /** The file's path here (fetched first from another replica if it was uploaded there); undefined for none. */
  async local(teamId: string, hash: string): Promise<string | undefined> {
    const file = this.path(teamId, hash);
    if (await exists(file)) return file;
    for (const peer of (await this.o.peers?.()) ?? []) {
      try {
        const path = replicaBuildFilePath(teamId, hash);
        const r = await fetch(`${peer}${path}?${replicaLinkQuery(this.secret, path)}`);
        if (r.status !== 200 || !r.body) {
          await r.body?.cancel();
          continue;
        }
        await this.keep(teamId, hash, Readable.fromWeb(r.body as never));
        this.o.log.info({ team: teamId, hash, from: peer }, 'fetched build files from another replica');
        return file;
      } catch (e) {
        this.o.log.warn({ err: e, peer, hash }, 'fetching build files from another replica failed');
      }
    }
    return undefined;
  }

  /** The path of the upload link for a team's file (after the server's base URL). */
  uploadQuery(teamId: string, hash: string): string {
    const expires = Date.now() + UPLOAD_LINK_MS;
    return new URLSearchParams({
      team: teamId,
      expires: String(expires),
      signature: this.sign(teamId, hash, expires),
    }).toString();
  }

  /** The PUT to an upload link: a gzip tar of a COPY step's files, checked before it is kept. */
  async receive(hash: string, query: SignedQuery, body: Readable, length?: number): Promise<void> {
    const team = this.check(hash, query);
    if (length !== undefined && length > MAX_UPLOAD_BYTES)
      throw new InvalidRequestError(`an upload may be at most ${MAX_UPLOAD_BYTES} bytes`);
    await this.keep(team, hash, body);
  }

  /** Another replica's GET of a file uploaded here (its link checked by the route): the file, if this replica has it. */
  async forReplica(team: string, hash: string): Promise<{ size: number; stream: Readable }> {
    const file = this.path(team, hash);
    const size = await stat(file).then(
      (s) => s.size,
      () => undefined,
    );
    if (size === undefined) throw new NotFoundError(`file ${hash} is not on this replica`);
    return { size, stream: createReadStream(file) };
  }

  /** Writes a file where builds find it: whole, a tar, at most MAX_UPLOAD_BYTES, or not at all. */
  private async keep(team: string, hash: string, body: Readable): Promise<void> {
    const dest = this.path(team, hash);
    await mkdir(join(this.o.home, 'template-files', team), { recursive: true });
    const tmp = `${dest}.${randomBytes(4).toString('hex')}.part`;
    try {
      let bytes = 0;
      body.on('data', (c: Buffer) => {
        bytes += c.length;
        if (bytes > MAX_UPLOAD_BYTES)
          body.destroy(new InvalidRequestError(`an upload may be at most ${MAX_UPLOAD_BYTES} bytes`));
      });
      await pipeline(body, createWriteStream(tmp, { mode: 0o600 }));
      // Only an archive tar can read goes where builds find it.
      await runCommand('tar', ['-tf', tmp]).catch(() => {
        throw new InvalidRequestError('the upload is not a tar archive (gzip-compressed or not)');
      });
      await rename(tmp, dest);
    } finally {
      await rm(tmp, { force: true });
    }
  }
}

export interface SignedQuery {
  team?: string;
  expires?: string;
  signature?: string;
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );
