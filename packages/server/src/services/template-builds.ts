import { randomUUID } from 'node:crypto';
import { type BuildLogLine, type BuildRequest, newSandboxId } from '@aiva/protocol/node';
import { and, asc, eq, gt, inArray } from 'drizzle-orm';
import type { Logger } from 'pino';
import type { Database } from '../db/database.js';
import { templateBuildLogs, templateBuilds, templates, templateTags } from '../db/schema.js';
import type { Nodes } from '../nodes/nodes.js';
import type { BuildFiles } from './build-files.js';
import { BuildStepFailedError, ConflictError, InvalidRequestError, NotFoundError } from './errors.js';
import type { Caller } from './team-service.js';
import type { BuildRow, TemplateCatalog } from './template-catalog.js';
import { checkTag, DEFAULT_TAG, parseTemplateRef } from './template-names.js';

type BuildBase = BuildRequest['base'];
type BuildStep = BuildRequest['steps'][number];

/** What `POST /v2/templates/{id}/builds/{buildID}` carries (E2B's TemplateBuildStartV2). */
export interface BuildStart {
  fromImage?: string;
  fromTemplate?: string;
  /** aiva's own: the files hash of an uploaded image archive (`aiva template import`). */
  fromArchive?: string;
  fromImageRegistry?: { type: string; username?: string; password?: string };
  steps?: BuildStep[];
  startCmd?: string;
  readyCmd?: string;
  /** aiva's own: fail at the base when the image has no ENTRYPOINT or CMD (`aiva deploy <env> <image>`). */
  requireCommand?: boolean;
  force?: boolean;
}

const STEP_TYPES = new Set(['RUN', 'COPY', 'ADD', 'ENV', 'ARG', 'WORKDIR', 'USER']);

/**
 * Template builds (E2B's build API): a build is requested (a template row, a `waiting`
 * build), its COPY steps' files are uploaded to links this server signs, its steps are
 * posted, and it runs on the node with its log written to the database as it goes.
 */
export class TemplateBuilds {
  private readonly running = new Map<string, AbortController>();

  constructor(
    private readonly db: Database,
    private readonly nodes: Nodes,
    private readonly catalog: TemplateCatalog,
    readonly files: BuildFiles,
    private readonly options: { log: Logger },
  ) {}

  /** Builds a restart interrupted end as errors; their logs say so. */
  async start(): Promise<void> {
    const stale = await this.db.select().from(templateBuilds).where(eq(templateBuilds.status, 'building'));
    for (const b of stale)
      await this.fail(b.id, new BuildStepFailedError('the server restarted during the build', 'base', []), 0);
  }

  /** Stops the builds in progress (server shutdown); each ends as an error. */
  async stop(): Promise<void> {
    for (const c of this.running.values()) c.abort(new Error('the server is shutting down'));
  }

  /** `POST /v3/templates`: the team's template `name` (made if new) and a new build waiting for its steps. */
  async request(
    caller: Caller,
    body: { name?: string; alias?: string; tags?: string[]; cpuCount?: number; memoryMB?: number },
  ) {
    const ref = body.name ?? body.alias;
    if (!ref) throw new InvalidRequestError('the template needs a name');
    const { name, tag } = parseTemplateRef(ref);
    const tags = [...new Set([...(tag ? [tag] : []), ...(body.tags ?? []).map(checkTag)])];
    if ((await this.catalog.recipes()).includes(name))
      throw new ConflictError(`${name} is one of aiva's own templates: choose another name`);
    const cpuCount = body.cpuCount ?? 2;
    const memoryMb = body.memoryMB ?? 1024;
    if (!Number.isInteger(cpuCount) || cpuCount < 1 || cpuCount > 64)
      throw new InvalidRequestError(`cpuCount must be from 1 to 64, not ${cpuCount}`);
    if (!Number.isInteger(memoryMb) || memoryMb < 128 || memoryMb % 2 !== 0)
      throw new InvalidRequestError(`memoryMB must be an even number of at least 128, not ${memoryMb}`);
    let row = await this.catalog.own(caller, name).catch(() => undefined);
    if (!row) {
      [row] = await this.db
        .insert(templates)
        .values({
          id: newSandboxId().slice(0, 20),
          teamId: caller.teamId,
          name,
          cpuCount,
          memoryMb,
          diskSizeMb: 0,
        })
        .onConflictDoNothing()
        .returning();
      row ??= await this.catalog.own(caller, name);
    }
    const busy = await this.db
      .select({ id: templateBuilds.id })
      .from(templateBuilds)
      .where(and(eq(templateBuilds.templateId, row.id), eq(templateBuilds.status, 'building')));
    if (busy.length > 0)
      throw new ConflictError(`template ${name} is being built already: wait for that build to end`);
    const buildId = randomUUID();
    await this.db
      .insert(templateBuilds)
      .values({ id: buildId, templateId: row.id, status: 'waiting', cpuCount, memoryMb, tags });
    return {
      templateID: row.id,
      buildID: buildId,
      names: [name],
      aliases: [name],
      tags: tags.length ? tags : [DEFAULT_TAG],
      public: row.public,
    };
  }

  /** `GET /templates/{id}/files/{hash}`: whether the team has the files, and a link to upload them to. */
  async uploadLink(caller: Caller, templateId: string, hash: string, baseUrl: string) {
    if (!/^[a-f0-9]{64}$/.test(hash))
      throw new InvalidRequestError(`files hash "${hash}" is not 64 hex digits`);
    await this.catalog.own(caller, templateId);
    const present = await this.files.has(caller.teamId, hash);
    const query = this.files.uploadQuery(caller.teamId, hash);
    return { present, url: `${baseUrl}/templates/${templateId}/files/${hash}?${query}` };
  }

  /** `POST /v2/templates/{id}/builds/{buildID}`: checks the steps and starts the build. */
  async startBuild(caller: Caller, templateId: string, buildId: string, body: BuildStart): Promise<void> {
    const row = await this.catalog.own(caller, templateId);
    const [build] = await this.db
      .select()
      .from(templateBuilds)
      .where(and(eq(templateBuilds.id, buildId), eq(templateBuilds.templateId, row.id)));
    if (!build) throw new NotFoundError(`build '${buildId}' not found`);
    if (build.status !== 'waiting') throw new InvalidRequestError('build is not in waiting state');
    const bases = [body.fromImage, body.fromTemplate, body.fromArchive].filter(Boolean).length;
    if (bases !== 1)
      throw new InvalidRequestError(
        bases > 1
          ? 'cannot specify both fromImage and fromTemplate'
          : 'must specify either fromImage or fromTemplate',
      );
    const steps = body.steps ?? [];
    for (const [i, s] of steps.entries()) {
      const type = s.type.toUpperCase();
      if (!STEP_TYPES.has(type))
        throw new InvalidRequestError(
          `step ${i + 1}: the step type ${s.type} is not supported (${[...STEP_TYPES].join(', ')} are)`,
        );
      if ((type === 'COPY' || type === 'ADD') && s.filesHash) {
        if (!(await this.files.has(caller.teamId, s.filesHash)))
          throw new InvalidRequestError(`step ${i + 1}: the files of ${s.args[0]} were not uploaded`);
      }
    }
    let base: BuildBase;
    if (body.fromArchive) {
      if (
        !/^[a-f0-9]{64}$/.test(body.fromArchive) ||
        !(await this.files.has(caller.teamId, body.fromArchive))
      )
        throw new InvalidRequestError(`the image archive ${body.fromArchive} was not uploaded`);
      base = { archiveHash: body.fromArchive };
    } else if (body.fromTemplate) {
      const parent = await this.catalog.resolve(caller, body.fromTemplate);
      if (!parent) throw new InvalidRequestError(`template '${body.fromTemplate}' not found`);
      base = { template: parent.node, context: parent.context as never };
    } else {
      const reg = body.fromImageRegistry;
      if (reg && reg.type !== 'registry')
        throw new InvalidRequestError(
          `${reg.type} registries are not supported: use a registry with a username and password`,
        );
      base = {
        image: body.fromImage as string,
        credentials: reg?.username ? { username: reg.username, password: reg.password ?? '' } : undefined,
      };
    }
    const [claimed] = await this.db
      .update(templateBuilds)
      .set({ status: 'building', updatedAt: new Date() })
      .where(and(eq(templateBuilds.id, buildId), eq(templateBuilds.status, 'waiting')))
      .returning();
    if (!claimed) throw new InvalidRequestError('build is not in waiting state');
    void this.run(caller, row.id, row.name, claimed, base, body, steps);
  }

  private async run(
    caller: Caller,
    templateId: string,
    name: string,
    build: BuildRow,
    base: BuildBase,
    body: BuildStart,
    steps: BuildStep[],
  ) {
    const controller = new AbortController();
    this.running.set(build.id, controller);
    const log = new BuildLog(this.db, build.id);
    try {
      const node = await this.nodes.place({ memoryMiB: build.memoryMb, vcpus: build.cpuCount });
      const result = await node.buildTemplate(
        {
          name,
          base,
          steps,
          startCmd: body.startCmd,
          readyCmd: body.readyCmd,
          ...(body.requireCommand ? { requireCommand: true } : {}),
          force: body.force,
          vcpus: build.cpuCount,
          memoryMiB: build.memoryMb,
          filesTeam: caller.teamId,
        },
        (e) => log.add(e),
        controller.signal,
      );
      log.add({
        timestamp: new Date().toISOString(),
        level: 'info',
        step: 'finalize',
        message: 'Build finished',
      });
      await log.close();
      const now = new Date();
      await this.db
        .update(templateBuilds)
        .set({
          status: 'ready',
          definition: result.definition as never,
          context: result.context as never,
          layers: result.layers,
          updatedAt: now,
          finishedAt: now,
        })
        .where(eq(templateBuilds.id, build.id));
      const [t] = await this.db.select().from(templates).where(eq(templates.id, templateId));
      await this.db
        .update(templates)
        .set({
          readyBuildId: build.id,
          buildCount: (t?.buildCount ?? 0) + 1,
          cpuCount: build.cpuCount,
          memoryMb: build.memoryMb,
          diskSizeMb: result.definition.diskSizeMiB,
          updatedAt: now,
        })
        .where(eq(templates.id, templateId));
      for (const tag of build.tags.length ? build.tags : [DEFAULT_TAG])
        await this.db
          .insert(templateTags)
          .values({ templateId, tag, buildId: build.id })
          .onConflictDoUpdate({
            target: [templateTags.templateId, templateTags.tag],
            set: { buildId: build.id, createdAt: now },
          });
      this.options.log.info(
        { template: templateId, build: build.id, cached: result.cachedSteps },
        'template built',
      );
      await this.catalog.changed(templateId);
    } catch (e) {
      await this.fail(build.id, e, log);
    } finally {
      this.running.delete(build.id);
    }
  }

  private async fail(buildId: string, e: unknown, log: BuildLog | number): Promise<void> {
    const step = e instanceof BuildStepFailedError ? e.step : undefined;
    const message = (e as Error).message;
    const sink =
      typeof log === 'number' ? new BuildLog(this.db, buildId, await this.logLength(buildId)) : log;
    sink.add({
      timestamp: new Date().toISOString(),
      level: 'error',
      step: step ?? 'finalize',
      message: `Build failed: ${message}`,
    });
    await sink.close();
    const now = new Date();
    await this.db
      .update(templateBuilds)
      .set({
        status: 'error',
        reason: { message, ...(step ? { step } : {}) },
        // The steps before the failure are cached layers: the template's until it is deleted.
        layers: e instanceof BuildStepFailedError ? e.layers : [],
        updatedAt: now,
        finishedAt: now,
      })
      .where(eq(templateBuilds.id, buildId));
    this.options.log.warn({ build: buildId, step, err: message }, 'template build failed');
  }

  /** `GET /templates/{id}/builds/{buildID}/status`: the state and the log from `logsOffset` on. */
  async status(
    caller: Caller,
    templateId: string,
    buildId: string,
    q: { logsOffset?: number; limit?: number; level?: string },
  ) {
    const row = await this.catalog.visible(caller, templateId);
    const [build] = await this.db
      .select()
      .from(templateBuilds)
      .where(and(eq(templateBuilds.id, buildId), eq(templateBuilds.templateId, row.id)));
    if (!build) throw new InvalidRequestError(`Build '${buildId}' not found`);
    const levels = ['debug', 'info', 'warn', 'error'];
    const min = q.level ? levels.indexOf(q.level) : 0;
    const all = await this.db
      .select()
      .from(templateBuildLogs)
      .where(and(eq(templateBuildLogs.buildId, build.id), gt(templateBuildLogs.seq, -1)))
      .orderBy(asc(templateBuildLogs.seq));
    const shown = all.filter((l) => levels.indexOf(l.level) >= min);
    const from = q.logsOffset ?? 0;
    const page = shown.slice(from, from + Math.min(q.limit ?? 100, 100));
    const entries = page.map((l) => ({
      timestamp: l.timestamp.toISOString(),
      level: l.level,
      step: l.step ?? undefined,
      message: l.message,
    }));
    return {
      templateID: row.id,
      buildID: build.id,
      status: build.status,
      logEntries: entries,
      logs: [] as string[],
      ...(build.reason
        ? { reason: { ...build.reason, logEntries: entries.filter((e) => e.level === 'error') } }
        : {}),
    };
  }

  private async logLength(buildId: string): Promise<number> {
    return this.db.$count(templateBuildLogs, eq(templateBuildLogs.buildId, buildId));
  }

  /** Builds in progress of `templateIds` (a delete must wait for them). */
  async anyRunning(templateIds: string[]): Promise<boolean> {
    if (templateIds.length === 0) return false;
    const rows = await this.db
      .select({ id: templateBuilds.id })
      .from(templateBuilds)
      .where(and(inArray(templateBuilds.templateId, templateIds), eq(templateBuilds.status, 'building')));
    return rows.length > 0;
  }
}

/** A build's log on its way to the database: lines are numbered and written in batches. */
class BuildLog {
  private pending: (typeof templateBuildLogs.$inferInsert)[] = [];
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly db: Database,
    private readonly buildId: string,
    private seq = 0,
  ) {}

  add(e: BuildLogLine): void {
    this.pending.push({
      buildId: this.buildId,
      seq: this.seq++,
      timestamp: new Date(e.timestamp),
      level: e.level,
      step: e.step,
      message: e.message.slice(0, 8192),
    });
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, 200);
  }

  private flush(): Promise<void> {
    const rows = this.pending.splice(0);
    if (rows.length > 0)
      this.flushing = this.flushing.then(() =>
        this.db
          .insert(templateBuildLogs)
          .values(rows)
          .then(() => {}),
      );
    return this.flushing;
  }

  async close(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.flush();
  }
}
