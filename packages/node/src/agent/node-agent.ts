import { createWriteStream } from 'node:fs';
import { mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import {
  commandProblem,
  formatProtocol,
  NODE_PROTOCOL,
  NODE_PROTOCOL_HEADER,
  NODE_ROUTES,
  type NodeCommand,
  type NodeCommandOutcome,
  type NodeJoinResponse,
  type NodeResultsResponse,
} from '@aiva/protocol/node';
import type { Logger } from 'pino';
import { ArtefactTransfer } from './artefact-transfer.js';
import { CommandJournal } from './command-journal.js';
import { ensureDirectCert } from './direct-cert.js';
import type { NodeExecutor } from './node-executor.js';
import { type NodeSnapshotOptions, NodeSnapshotter } from './node-snapshot.js';
import { TunnelDialError, TunnelServer } from './tunnel-server.js';

// The node agent (`aiva node join`): it opens every connection to the server — joins
// once, then pushes snapshots of its node, long-polls for commands, runs them on the
// executor and posts their outcomes — so a node behind NAT works.

export interface NodeAgentOptions {
  serverUrl: string;
  /** The node's data directory; the agent keeps its credential and journal in `agent/` there. */
  home: string;
  name: string;
  labels: Record<string, string>;
  /** The join token; needed on the first start only (the credential is kept). */
  token?: string;
  /**
   * Direct mode: `address` (host:port) is where the server may dial this node's TLS
   * listener, which listens on `listenHost`:`listenPort`; its self-signed certificate is
   * kept in `agent/direct/`, its fingerprint reported in each snapshot.
   */
  direct?: { address: string; listenHost: string; listenPort: number };
  aivaVersion: string;
  memoryBudgetMiB: number;
  maxSandboxes?: number;
  executor: NodeExecutor;
  logger: Logger;
}

/** The server refused the node for good (a wrong or revoked token or credential, an incompatible version). */
export class NodeRefusedError extends Error {
  override name = 'NodeRefusedError';
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

interface Credentials extends NodeJoinResponse {
  serverUrl: string;
}

const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;

/** Exponential backoff with full jitter: attempt 0 waits up to 250 ms, then twice as long each time, up to 30 s. */
export function backoffMs(attempt: number): number {
  return Math.random() * Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** attempt);
}

/** Commands after which the node's snapshot lists other layers or checkpoints. */
const CHANGES_HOLDINGS = new Set<NodeCommand['kind']>([
  'template.build',
  'artefact.fetch',
  'layers.remove',
  'sandbox.checkpoint',
  'checkpoint.remove',
]);

export class NodeAgent {
  private credentials: Credentials | undefined;
  private snapshotter: NodeSnapshotter | undefined;
  private readonly journal: CommandJournal;
  private readonly stopping = new AbortController();
  /** Outcomes the server has not acknowledged yet. */
  private readonly unsent = new Map<string, NodeCommandOutcome>();
  private snapshotDue: (() => void) | undefined;
  /** Waiters for a snapshot taken after they asked to reach the server (`snapshotNow`). */
  private snapshotWaiters: (() => void)[] = [];
  private fatal: Error | undefined;

  /** Moves layers and checkpoints between this node's stores and the server's (the executor's `artefacts`). */
  readonly artefacts: ArtefactTransfer;

  constructor(private readonly options: NodeAgentOptions) {
    this.journal = new CommandJournal(join(options.home, 'agent', 'journal'));
    this.artefacts = new ArtefactTransfer({
      serverUrl: options.serverUrl,
      credential: () => this.credentials?.credential ?? '',
      artefacts: options.executor.node.images.artefacts,
      checkpoints: options.executor.node.sandboxes.checkpoints,
      logger: options.logger.child({ part: 'artefacts' }),
    });
  }

  get nodeId(): string | undefined {
    return this.credentials?.nodeId;
  }

  private get credentialsFile(): string {
    return join(this.options.home, 'agent', 'credentials.json');
  }

  /** Joins (or reuses the kept credential) and runs until `stop()` or a refusal; rejects with NodeRefusedError. */
  async run(): Promise<void> {
    for (const o of await this.journal.open()) this.unsent.set(o.commandId, o);
    this.credentials = await this.join();
    const { nodeId } = this.credentials;
    const snapshotOptions: NodeSnapshotOptions = {
      nodeId,
      aivaVersion: this.options.aivaVersion,
      memoryBudgetMiB: this.options.memoryBudgetMiB,
      maxSandboxes: this.options.maxSandboxes,
    };
    const tunnel = new TunnelServer({
      nodeId,
      tunnelKey: Buffer.from(this.credentials.tunnelKey, 'base64'),
      // The address comes from the node's own records, only for a sandbox that runs.
      resolve: (sandboxId, port) => {
        const host = this.options.executor.address(sandboxId);
        return host ? { host, port } : undefined;
      },
      log: this.options.logger.child({ part: 'tunnel' }),
    });
    const { direct } = this.options;
    if (direct) {
      const cert = await ensureDirectCert(join(this.options.home, 'agent', 'direct'), this.options.name);
      const at = await tunnel.listenDirect(
        { key: cert.key, cert: cert.cert },
        direct.listenPort,
        direct.listenHost,
      );
      snapshotOptions.direct = { address: direct.address, fingerprint: cert.fingerprint };
      this.options.logger.info(
        { listen: `${at.address}:${at.port}`, address: direct.address, fingerprint: cert.fingerprint },
        'direct listener up',
      );
    }
    this.snapshotter = new NodeSnapshotter(this.options.executor, snapshotOptions);
    this.options.executor.onSandbox((s) => {
      // A sandbox that stops running takes its open streams with it.
      if (s.state !== 'running') tunnel.resetSandbox(s.id);
      this.snapshotDue?.();
    });
    this.options.logger.info({ node: nodeId, server: this.options.serverUrl }, 'node joined');
    try {
      await Promise.all([
        this.snapshotLoop(),
        this.commandLoop(),
        this.resultLoop(),
        this.tunnelLoop(tunnel),
      ]);
    } finally {
      await tunnel.close();
    }
    if (this.fatal) throw this.fatal;
  }

  stop(): void {
    this.stopping.abort();
  }

  private async join(): Promise<Credentials> {
    const kept = await readFile(this.credentialsFile, 'utf8').then(
      (t) => JSON.parse(t) as Credentials,
      () => undefined,
    );
    if (kept && kept.serverUrl === this.options.serverUrl) return kept;
    if (!this.options.token)
      throw new NodeRefusedError(
        `this node has not joined ${this.options.serverUrl}: give it a join token (--token)`,
      );
    const body = {
      token: this.options.token,
      name: this.options.name,
      labels: this.options.labels,
      protocol: formatProtocol(NODE_PROTOCOL),
      aivaVersion: this.options.aivaVersion,
      ...(this.options.direct ? { directAddress: this.options.direct.address } : {}),
    };
    const joined = await this.retrying(
      'join',
      () => this.request<NodeJoinResponse>('POST', NODE_ROUTES.join, body),
      // A join refused as asked (a bad name, a name taken) is not tried again.
      [400, 409],
    );
    const credentials = { ...joined, serverUrl: this.options.serverUrl };
    await mkdir(join(this.options.home, 'agent'), { recursive: true, mode: 0o700 });
    await writeFile(this.credentialsFile, `${JSON.stringify(credentials, null, 2)}\n`, { mode: 0o600 });
    return credentials;
  }

  /** One request to the server; gzip-encoded JSON body, the credential once joined. */
  private async request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const headers: Record<string, string> = { [NODE_PROTOCOL_HEADER]: formatProtocol(NODE_PROTOCOL) };
    if (this.credentials) headers.authorization = `Bearer ${this.credentials.credential}`;
    let payload: Buffer | undefined;
    if (body !== undefined) {
      payload = gzipSync(JSON.stringify(body));
      headers['content-type'] = 'application/json';
      headers['content-encoding'] = 'gzip';
    }
    const r = await fetch(new URL(path, this.options.serverUrl), {
      method,
      headers,
      body: payload,
      signal: signal ? AbortSignal.any([signal, this.stopping.signal]) : this.stopping.signal,
    });
    const text = await r.text();
    if (!r.ok) {
      const message = (() => {
        try {
          return (JSON.parse(text) as { message?: string }).message ?? text;
        } catch {
          return text;
        }
      })();
      throw new HttpError(r.status, `${method} ${path}: ${r.status} ${message}`);
    }
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * Runs `call` until it succeeds, backing off between failures. A 401 (a wrong or revoked
   * token or credential) or 426 (an incompatible version) ends the agent.
   */
  private async retrying<T>(what: string, call: () => Promise<T>, alsoFatal: number[] = []): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await call();
      } catch (e) {
        if (this.stopping.signal.aborted) throw e;
        if (e instanceof HttpError && [401, 403, 426, ...alsoFatal].includes(e.status)) {
          const refused = new NodeRefusedError(e.message);
          this.fatal ??= refused;
          this.stop();
          throw refused;
        }
        const wait = backoffMs(attempt);
        this.options.logger.warn(
          { err: (e as Error).message, retryInMs: Math.round(wait) },
          `${what} failed`,
        );
        await sleep(wait, undefined, { signal: this.stopping.signal }).catch(() => {});
      }
    }
  }

  private async snapshotLoop(): Promise<void> {
    const heartbeatMs = (this.credentials?.heartbeatSeconds ?? 5) * 1000;
    while (!this.stopping.signal.aborted) {
      const waiting = this.snapshotWaiters.splice(0);
      try {
        const snapshot = await (this.snapshotter as NodeSnapshotter).take();
        await this.retrying('snapshot', () => this.request('POST', NODE_ROUTES.snapshot, snapshot));
      } catch {
        if (this.stopping.signal.aborted) return;
      } finally {
        for (const w of waiting) w();
      }
      if (this.snapshotWaiters.length > 0) continue;
      // The next one after a heartbeat, or soon after a sandbox changes state.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, heartbeatMs);
        const done = () => {
          clearTimeout(timer);
          this.snapshotDue = undefined;
          resolve();
        };
        this.snapshotDue = () => setTimeout(done, 50);
        this.stopping.signal.addEventListener('abort', done, { once: true });
      });
    }
  }

  /** Keeps the tunnel that carries sandbox traffic open: dials again, backing off, whenever it drops. */
  private async tunnelLoop(tunnel: TunnelServer): Promise<void> {
    const credential = (this.credentials as Credentials).credential;
    let attempt = 0;
    while (!this.stopping.signal.aborted) {
      try {
        const connection = await tunnel.dial(this.options.serverUrl, credential);
        attempt = 0;
        this.options.logger.info('tunnel open');
        // Stopping ends the session at once (kept-alive streams would hold a graceful close open).
        const stop = () => void tunnel.close();
        this.stopping.signal.addEventListener('abort', stop, { once: true });
        const why = await connection.closed;
        this.stopping.signal.removeEventListener('abort', stop);
        if (!this.stopping.signal.aborted) this.options.logger.warn({ err: why?.message }, 'tunnel closed');
      } catch (e) {
        if (e instanceof TunnelDialError && e.status === 401) {
          this.fatal ??= new NodeRefusedError(`the server refused the tunnel: ${e.message}`);
          this.stop();
          return;
        }
        this.options.logger.warn({ err: (e as Error).message }, 'tunnel dial failed');
      }
      await sleep(backoffMs(attempt++), undefined, { signal: this.stopping.signal }).catch(() => {});
    }
  }

  private async commandLoop(): Promise<void> {
    const wait = this.credentials?.commandWaitSeconds ?? 25;
    while (!this.stopping.signal.aborted) {
      const got = await this.retrying('command poll', () =>
        this.request<{ commands: unknown[] }>('GET', `${NODE_ROUTES.commands}?wait=${wait}`, undefined),
      ).catch(() => undefined);
      for (const c of got?.commands ?? []) void this.handle(c);
    }
  }

  /** Runs a command once: one seen before is answered from the journal. */
  private async handle(value: unknown): Promise<void> {
    const problem = commandProblem(value);
    const id = (value as { id?: unknown })?.id;
    if (problem) {
      this.options.logger.warn({ problem }, 'the server sent a command this node does not understand');
      if (typeof id === 'string' && /^[A-Za-z0-9_-]{8,64}$/.test(id))
        this.answer({
          commandId: id,
          ok: false,
          error: {
            code: problem.startsWith('unknown command kind') ? 'UNSUPPORTED_COMMAND' : 'INVALID_SPEC',
            message: problem,
          },
        });
      return;
    }
    const command = value as NodeCommand;
    const seen = await this.journal.get(command.id);
    if (seen?.state === 'done') return this.answer(seen.outcome);
    if (!seen) await this.journal.started(command.id, command.kind);
    const outcome = await this.options.executor.execute(command, {
      progress: (line) =>
        void this.request('POST', NODE_ROUTES.progress, { commandId: command.id, lines: [line] }).catch(
          () => {},
        ),
    });
    await this.journal.done(command.id, command.kind, outcome);
    // What the node holds changed: the server sees it (a new build's layers, for placement
    // and for the nodes that will fetch them) before it hears the command is done.
    if (outcome.ok && CHANGES_HOLDINGS.has(command.kind))
      await Promise.race([this.snapshotNow(), sleep(5000, undefined, { ref: false })]);
    this.answer(outcome);
  }

  /** Resolves once a snapshot taken after this call has reached the server (or failed to). */
  private snapshotNow(): Promise<void> {
    return new Promise((resolve) => {
      this.snapshotWaiters.push(resolve);
      this.snapshotDue?.();
    });
  }

  /**
   * The uploaded files a build reads, fetched from the server once into the agent's
   * directory (the executor's `buildFiles`).
   */
  async buildFiles(team: string, hashes: string[]): Promise<(hash: string) => string> {
    const dir = join(this.options.home, 'agent', 'files', team);
    await mkdir(dir, { recursive: true });
    const path = (hash: string) => join(dir, `${hash}.tar.gz`);
    for (const hash of new Set(hashes)) {
      if (
        await stat(path(hash)).then(
          () => true,
          () => false,
        )
      )
        continue;
      const r = await fetch(new URL(`${NODE_ROUTES.files}/${team}/${hash}`, this.options.serverUrl), {
        headers: {
          [NODE_PROTOCOL_HEADER]: formatProtocol(NODE_PROTOCOL),
          authorization: `Bearer ${this.credentials?.credential ?? ''}`,
        },
        signal: this.stopping.signal,
      });
      if (!r.ok || !r.body) throw new Error(`fetching build file ${hash}: ${r.status} ${await r.text()}`);
      const tmp = `${path(hash)}.part`;
      await pipeline(Readable.fromWeb(r.body as never), createWriteStream(tmp));
      await rename(tmp, path(hash));
    }
    return path;
  }

  private resultsDue: (() => void) | undefined;

  private answer(outcome: NodeCommandOutcome): void {
    this.unsent.set(outcome.commandId, outcome);
    this.resultsDue?.();
  }

  /** Posts outcomes until the server has acknowledged each. */
  private async resultLoop(): Promise<void> {
    while (!this.stopping.signal.aborted) {
      const outcomes = [...this.unsent.values()];
      if (outcomes.length > 0) {
        const r = await this.retrying('results', () =>
          this.request<NodeResultsResponse>('POST', NODE_ROUTES.results, { outcomes }),
        ).catch(() => undefined);
        for (const v of r?.verdicts ?? []) {
          if (v.verdict === 'rejected')
            this.options.logger.warn({ command: v.commandId }, 'the server rejected an outcome of this node');
          if (this.unsent.get(v.commandId) === outcomes.find((o) => o.commandId === v.commandId))
            this.unsent.delete(v.commandId);
        }
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          this.resultsDue = undefined;
          resolve();
        };
        this.resultsDue = done;
        this.stopping.signal.addEventListener('abort', done, { once: true });
      });
    }
  }
}
