import { randomBytes } from 'node:crypto';
import { ENVD_PORT } from '@aiva/protocol';
import { and, asc, eq } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { type EnvironmentPort, environments } from '../db/schema.js';
import type { EnvironmentPorts } from './environment-ports.js';
import {
  checkName,
  checkRestart,
  type EnvironmentSettings,
  settingsText,
  withoutSetting,
  withSetting,
} from './environment-settings.js';
import { EnvironmentSupervisor } from './environment-supervisor.js';
import { ConflictError, InvalidRequestError, InvalidStateError, NotFoundError } from './errors.js';
import type { SandboxService } from './sandbox-service.js';
import type { Caller } from './team-service.js';
import type { TemplateCatalog } from './template-catalog.js';
import type { VolumeService } from './volume-service.js';

export type EnvironmentRow = typeof environments.$inferSelect;

/** The metadata key (and value: the name) of an environment's sandbox: how others find it. */
export const ENVIRONMENT_METADATA_KEY = 'aiva.environment';
/** Where an environment's volume is mounted in its sandbox. */
export const DATA_PATH = '/data';

/** An environment as the API shows it. */
export interface EnvironmentView {
  name: string;
  /** running | stopped (kept, or none yet) | starting. */
  state: 'running' | 'stopped' | 'starting';
  desiredState: 'running' | 'stopped';
  sandboxID: string | null;
  volumeID: string;
  settings: Record<string, string>;
  createdAt: string;
}

export interface StartOptions {
  cpus?: number;
  memoryMb?: number;
  diskMb?: number;
  ports?: EnvironmentPort[];
  /** Make a fresh sandbox (with the same volume) when the sizes differ from the kept one's. */
  recreate?: boolean;
}

export interface DeployRequest {
  /** A tar.gz uploaded into the sandbox's /tmp, unpacked to /app. */
  archive?: string;
  cmd?: string;
  restart?: string;
  /** Recreate the sandbox from this template, with the same volume. */
  template?: string;
  /**
   * With `template` and no `cmd`: the service runs the command of the image the template
   * was built from (its ENTRYPOINT then CMD), as `aiva deploy <env> <image>` asks.
   */
  imageCommand?: boolean;
}

/** The caller on whose behalf aiva itself brings environments back at start. */
const systemCaller = (teamId: string): Caller => ({ teamId, keyId: 'aiva', scopes: [] });

/**
 * Named environments: a team's sandbox with a name, no end time and a volume of its own
 * at /data. `stop` shelves the sandbox (paused without memory: the disk is kept), `start`
 * brings it back, or makes a fresh one from the template with the same volume when it is
 * gone; the service `deploy` installed runs under a supervisor inside it and is started
 * again with it. One operation per environment at a time (in this process).
 */
export class EnvironmentService {
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly db: Database,
    private readonly sandboxes: SandboxService,
    private readonly volumes: VolumeService,
    private readonly templates: TemplateCatalog,
    private readonly ports: EnvironmentPorts,
    private readonly log: Logger,
  ) {}

  /** Runs `fn` once no other operation on the team's environment `name` runs. */
  private exclusive<T>(caller: Caller, name: string, fn: () => Promise<T>): Promise<T> {
    const key = `${caller.teamId}/${name}`;
    const before = this.busy.get(key) ?? Promise.resolve();
    const run = before.catch(() => {}).then(fn);
    // What waits for this run never fails: its caller hears the failure.
    const tracked = run.then(
      () => {},
      () => {},
    );
    void tracked.finally(() => {
      if (this.busy.get(key) === tracked) this.busy.delete(key);
    });
    this.busy.set(key, tracked);
    return run;
  }

  private async row(caller: Caller, name: string): Promise<EnvironmentRow> {
    checkName(name);
    const [row] = await this.db
      .select()
      .from(environments)
      .where(and(eq(environments.teamId, caller.teamId), eq(environments.name, name)));
    if (!row) throw new NotFoundError(`environment "${name}" does not exist`);
    return row;
  }

  private settingsOf(row: EnvironmentRow): EnvironmentSettings {
    return {
      template: row.template,
      cpus: row.cpus,
      memoryMb: row.memoryMb,
      diskMb: row.diskMb,
      ports: row.ports,
      env: row.env,
      cmd: row.service?.cmd || null,
      restart: row.service?.restart ?? 'on-failure',
    };
  }

  private view(row: EnvironmentRow): EnvironmentView {
    const live = row.sandboxId ? this.sandboxes.liveState(row.sandboxId) : undefined;
    return {
      name: row.name,
      state: live === 'running' ? 'running' : live === 'creating' ? 'starting' : 'stopped',
      desiredState: row.desiredState,
      sandboxID: live ? row.sandboxId : null,
      volumeID: row.volumeId,
      settings: settingsText(this.settingsOf(row)),
      createdAt: row.createdAt.toISOString(),
    };
  }

  /** Makes the environment and its volume (named after it); nothing runs until `start`. */
  async init(
    caller: Caller,
    r: { name: string; template: string; cpus?: number; memoryMb?: number; diskMb?: number },
  ): Promise<EnvironmentView> {
    checkName(r.name);
    let settings: EnvironmentSettings = {
      template: 'base',
      cpus: null,
      memoryMb: null,
      diskMb: null,
      ports: [],
      env: {},
      cmd: null,
      restart: 'on-failure',
    };
    settings = withSetting(settings, 'template', r.template);
    if (r.cpus !== undefined) settings = withSetting(settings, 'cpus', String(r.cpus));
    if (r.memoryMb !== undefined) settings = withSetting(settings, 'memory', String(r.memoryMb));
    if (r.diskMb !== undefined) settings = withSetting(settings, 'disk', String(r.diskMb));
    return this.exclusive(caller, r.name, async () => {
      const taken = await this.row(caller, r.name).catch(() => undefined);
      if (taken) throw new ConflictError(`an environment named "${r.name}" already exists`);
      const volume = await this.volumes.create(caller, r.name).catch((e: Error) => {
        if (e instanceof ConflictError)
          throw new ConflictError(
            `a volume named "${r.name}" already exists, and an environment keeps its data on a volume of its own name: remove that volume or choose another name`,
          );
        throw e;
      });
      const [made] = await this.db
        .insert(environments)
        .values({
          id: `env_${randomBytes(10).toString('hex')}`,
          teamId: caller.teamId,
          name: r.name,
          template: settings.template,
          cpus: settings.cpus,
          memoryMb: settings.memoryMb,
          diskMb: settings.diskMb,
          volumeId: volume.id,
        })
        .onConflictDoNothing({ target: [environments.teamId, environments.name] })
        .returning();
      if (!made) {
        await this.volumes.destroy(caller, volume.id).catch(() => {});
        throw new ConflictError(`an environment named "${r.name}" already exists`);
      }
      this.log.info({ environment: r.name, team: caller.teamId }, 'environment created');
      return this.view(made);
    });
  }

  async list(caller: Caller): Promise<EnvironmentView[]> {
    const rows = await this.db
      .select()
      .from(environments)
      .where(eq(environments.teamId, caller.teamId))
      .orderBy(asc(environments.name));
    return rows.map((r) => this.view(r));
  }

  async get(caller: Caller, name: string): Promise<EnvironmentView> {
    return this.view(await this.row(caller, name));
  }

  /** The supervisor of the environment's running sandbox (409 when it is not running). */
  private async supervisor(caller: Caller, row: EnvironmentRow): Promise<EnvironmentSupervisor> {
    const id = row.sandboxId;
    if (!id || this.sandboxes.liveState(id) !== 'running')
      throw new InvalidStateError(
        `environment "${row.name}" is not running: \`aiva start ${row.name}\` first`,
      );
    const sandbox = await this.sandboxes.row(caller, id);
    const at = this.sandboxes.nodeOfSandbox(id).endpoint(id, ENVD_PORT);
    if (!at || at.via)
      throw new InvalidRequestError('environments run on the server’s own node; this sandbox is elsewhere');
    return new EnvironmentSupervisor({ host: at.host, port: at.port, accessToken: sandbox.envdAccessToken });
  }

  /**
   * Starts the environment: its kept sandbox resumed, else a fresh one from its template
   * with its volume; its ports listened on first (a bound one: 409, nothing left), its
   * service started. Sizes different from a kept sandbox's are a 409 unless `recreate`.
   */
  start(caller: Caller, name: string, o: StartOptions = {}): Promise<EnvironmentView> {
    return this.exclusive(caller, name, () => this.startNow(caller, name, o));
  }

  private async startNow(caller: Caller, name: string, o: StartOptions): Promise<EnvironmentView> {
    let row = await this.row(caller, name);
    let s = this.settingsOf(row);
    if (o.cpus !== undefined) s = withSetting(s, 'cpus', String(o.cpus));
    if (o.memoryMb !== undefined) s = withSetting(s, 'memory', String(o.memoryMb));
    if (o.diskMb !== undefined) s = withSetting(s, 'disk', String(o.diskMb));
    if (o.ports) s = { ...s, ports: o.ports };
    let keptId = row.sandboxId && this.sandboxes.liveState(row.sandboxId) ? row.sandboxId : undefined;
    if (keptId) {
      const kept = await this.sandboxes.row(caller, keptId);
      const differs = [
        s.cpus !== null && s.cpus !== kept.cpuCount && `${s.cpus} vCPUs (it has ${kept.cpuCount})`,
        s.memoryMb !== null &&
          s.memoryMb !== kept.memoryMb &&
          `${s.memoryMb} MiB of memory (it has ${kept.memoryMb})`,
        s.diskMb !== null &&
          s.diskMb !== kept.diskSizeMb &&
          `a ${s.diskMb} MiB disk (it has ${kept.diskSizeMb})`,
      ].filter(Boolean);
      if (differs.length > 0 && !o.recreate)
        throw new ConflictError(
          `environment "${name}" keeps a sandbox of another size: ${differs.join(', ')}; start it with --recreate to make a fresh one (files outside ${DATA_PATH} are lost)`,
        );
      if (differs.length > 0) {
        await this.ports.close(row.id);
        await this.sandboxes.kill(caller, keptId);
        keptId = undefined;
      }
    }
    const guest = (port: number) => {
      const id = row.sandboxId;
      const at =
        id && this.sandboxes.liveState(id) === 'running'
          ? this.sandboxes.nodeOfSandbox(id).endpoint(id, port)
          : undefined;
      return at && !at.via ? { host: at.host, port: at.port } : undefined;
    };
    const portsWereOpen = this.ports.isOpen(row.id, s.ports);
    if (!portsWereOpen) await this.ports.listen(row.id, s.ports, guest);
    let made: string | undefined;
    try {
      let fresh = true;
      if (keptId && this.sandboxes.liveState(keptId) === 'running') fresh = false;
      else if (keptId) await this.sandboxes.resumeKept(caller, keptId, false);
      else made = keptId = await this.createSandbox(caller, row, s);
      [row] = (await this.db
        .update(environments)
        .set({
          sandboxId: keptId,
          desiredState: 'running',
          cpus: s.cpus,
          memoryMb: s.memoryMb,
          diskMb: s.diskMb,
          ports: s.ports,
        })
        .where(eq(environments.id, row.id))
        .returning()) as [EnvironmentRow];
      if (fresh && row.service?.cmd) await (await this.supervisor(caller, row)).start(row.service, row.env);
      this.log.info({ environment: name, sandbox: keptId, fresh: Boolean(made) }, 'environment started');
      return this.view(row);
    } catch (e) {
      if (!portsWereOpen) await this.ports.close(row.id);
      if (made) await this.sandboxes.kill(caller, made).catch(() => {});
      throw e;
    }
  }

  private async createSandbox(caller: Caller, row: EnvironmentRow, s: EnvironmentSettings): Promise<string> {
    const volume = await this.volumes.get(caller, row.volumeId);
    const size = {
      ...(s.cpus !== null ? { vcpus: s.cpus } : {}),
      ...(s.memoryMb !== null ? { memoryMiB: s.memoryMb } : {}),
      ...(s.diskMb !== null ? { diskMiB: s.diskMb } : {}),
    };
    const sandbox = await this.sandboxes.create(
      caller,
      {
        templateID: s.template,
        metadata: { [ENVIRONMENT_METADATA_KEY]: row.name },
        volumeMounts: [{ name: volume.name, path: DATA_PATH }],
      },
      300,
      { noEnd: true, ...(Object.keys(size).length > 0 ? { size } : {}) },
    );
    return sandbox.sandboxID;
  }

  /**
   * Stops the environment: its service ends (SIGTERM, up to 15 s; `force`: not waited
   * for), then its sandbox is shelved (its disk kept) and its ports closed.
   */
  stop(caller: Caller, name: string, force = false): Promise<EnvironmentView> {
    return this.exclusive(caller, name, async () => {
      let row = await this.row(caller, name);
      const id = row.sandboxId;
      if (id && this.sandboxes.liveState(id) === 'running') {
        if (row.service?.cmd && !force)
          await (await this.supervisor(caller, row))
            .stop(false)
            .catch((e: Error) =>
              this.log.warn({ environment: name, err: e }, 'the service did not stop cleanly'),
            );
        await this.sandboxes.pause(caller, id, false);
      }
      await this.ports.close(row.id);
      [row] = (await this.db
        .update(environments)
        .set({ desiredState: 'stopped' })
        .where(eq(environments.id, row.id))
        .returning()) as [EnvironmentRow];
      this.log.info({ environment: name, force }, 'environment stopped');
      return this.view(row);
    });
  }

  /** Removes the environment, its sandbox and its volume; a running one only with `force` (else 409). */
  remove(caller: Caller, name: string, force = false): Promise<void> {
    return this.exclusive(caller, name, async () => {
      const row = await this.row(caller, name);
      const id = row.sandboxId;
      const state = id ? this.sandboxes.liveState(id) : undefined;
      if (state && state !== 'paused' && !force)
        throw new ConflictError(`environment "${name}" is running: stop it first, or remove it with --force`);
      await this.ports.close(row.id);
      if (id && state) await this.sandboxes.kill(caller, id);
      // Its row goes with its volume (a foreign key that cascades).
      await this.volumes.destroy(caller, row.volumeId);
      await this.db.delete(environments).where(eq(environments.id, row.id));
      this.log.info({ environment: name, team: caller.teamId }, 'environment removed');
    });
  }

  /**
   * Installs the environment's service: an archive unpacked to /app and its command run
   * under the supervisor (`restart` as asked); or, with `template`, the sandbox made afresh
   * from that template with the same volume, and the service (if any) started in it.
   */
  deploy(caller: Caller, name: string, r: DeployRequest): Promise<EnvironmentView> {
    return this.exclusive(caller, name, async () => {
      let row = await this.row(caller, name);
      let s = this.settingsOf(row);
      if (r.cmd !== undefined) s = withSetting(s, 'cmd', r.cmd);
      if (r.restart !== undefined) s = { ...s, restart: checkRestart(r.restart) };
      if (r.imageCommand && r.cmd === undefined) {
        if (r.template === undefined)
          throw new InvalidRequestError('imageCommand needs the template built from the image');
        s = withSetting(s, 'cmd', await this.imageCommandOf(caller, r.template));
      }
      if (r.template !== undefined) {
        s = withSetting(s, 'template', r.template);
        await this.saveSettings(row, s);
        const id = row.sandboxId;
        if (id && this.sandboxes.liveState(id)) await this.sandboxes.kill(caller, id);
        return this.startNow(caller, name, {});
      }
      if (!r.archive && !s.cmd)
        throw new InvalidRequestError('deploy needs a directory (archive) or a command');
      const supervisor = await this.supervisor(caller, row);
      if (r.archive) {
        await supervisor.stop(false);
        await supervisor.install(r.archive);
      }
      if (!s.cmd) throw new InvalidRequestError('deploy needs the service’s command (cmd)');
      row = await this.saveSettings(row, s);
      if (row.service) await supervisor.start(row.service, row.env);
      this.log.info({ environment: name, cmd: s.cmd, restart: s.restart }, 'environment deployed');
      return this.view(row);
    });
  }

  /** The command (ENTRYPOINT then CMD) of the image `template` was built from, as a shell line. */
  private async imageCommandOf(caller: Caller, template: string): Promise<string> {
    const resolved = await this.templates.resolve(caller, template);
    if (!resolved) throw new NotFoundError(`template '${template}' not found`);
    const command = resolved.context?.command;
    if (!Array.isArray(command) || command.length === 0)
      throw new InvalidRequestError(
        `template '${template}' has no image command (ENTRYPOINT or CMD): give the service's command (cmd)`,
      );
    return (command as string[]).map(shellWord).join(' ');
  }

  /** Sets (`set`: key → value) and unsets settings; they apply at the next start (or deploy). */
  configure(
    caller: Caller,
    name: string,
    set: Record<string, string>,
    unset: string[],
  ): Promise<EnvironmentView> {
    return this.exclusive(caller, name, async () => {
      const row = await this.row(caller, name);
      let s = this.settingsOf(row);
      for (const [k, v] of Object.entries(set)) s = withSetting(s, k, v);
      for (const k of unset) s = withoutSetting(s, k);
      return this.view(await this.saveSettings(row, s));
    });
  }

  private async saveSettings(row: EnvironmentRow, s: EnvironmentSettings): Promise<EnvironmentRow> {
    const [saved] = await this.db
      .update(environments)
      .set({
        template: s.template,
        cpus: s.cpus,
        memoryMb: s.memoryMb,
        diskMb: s.diskMb,
        ports: s.ports,
        env: s.env,
        // A restart policy is kept before there is a command (an empty cmd: no service yet).
        service:
          s.cmd || row.service || s.restart !== 'on-failure'
            ? { cmd: s.cmd ?? '', restart: s.restart }
            : null,
      })
      .where(eq(environments.id, row.id))
      .returning();
    return saved as EnvironmentRow;
  }

  /** The service log (from `offset`, else its last `tail` lines), or the sandbox's console log. */
  async logs(
    caller: Caller,
    name: string,
    q: { offset?: number; tail?: number; console?: boolean },
  ): Promise<{ text: string; offset: number }> {
    const row = await this.row(caller, name);
    if (q.console) {
      if (!row.sandboxId || !this.sandboxes.liveState(row.sandboxId))
        throw new InvalidStateError(`environment "${name}" has no sandbox: \`aiva start ${name}\` first`);
      const entries = await this.sandboxes.logs(caller, row.sandboxId, {
        limit: q.tail ?? 1000,
        direction: 'backward',
      });
      const lines = entries.map((e) => `${e.timestamp} ${e.message}`).reverse();
      return { text: lines.length ? `${lines.join('\n')}\n` : '', offset: 0 };
    }
    return (await this.supervisor(caller, row)).log(q);
  }

  /** Brings back (after aiva starts) every environment whose desired state is running. */
  async restore(): Promise<void> {
    const rows = await this.db.select().from(environments).where(eq(environments.desiredState, 'running'));
    for (const row of rows)
      await this.start(systemCaller(row.teamId), row.name).then(
        () => this.log.info({ environment: row.name, team: row.teamId }, 'environment brought back'),
        (e: Error) =>
          this.log.error({ environment: row.name, err: e }, 'bringing an environment back failed'),
      );
  }

  close(): Promise<void> {
    return this.ports.closeAll();
  }
}

/** `word` as one word of a POSIX shell line. */
function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", "'\\''")}'`;
}
