import type { TemplateDefinitionData as TemplateDefinition } from '@aiva/protocol/node';
import { and, desc, eq, inArray, ne, or, sql } from 'drizzle-orm';
import type { Database } from '../db/database.js';
import { sandboxes, templateBuilds, templates, templateTags } from '../db/schema.js';
import type { Nodes } from '../nodes/nodes.js';
import { ConflictError, ForbiddenError, InvalidRequestError, NotFoundError } from './errors.js';
import type { Caller } from './team-service.js';
import { checkTag, DEFAULT_TAG, parseTemplateRef } from './template-names.js';

export type TemplateRow = typeof templates.$inferSelect;
export type BuildRow = typeof templateBuilds.$inferSelect;

/** What a create or a build names as its template, resolved. */
export interface ResolvedTemplate {
  /** The template's id (a recipe's name for aiva's own). */
  templateId: string;
  alias: string;
  /** What the node runs: a recipe's name, or the build's definition. */
  node: string | TemplateDefinition;
  /** The build's end context (a build from this template starts there). */
  context?: Record<string, unknown>;
  row?: TemplateRow;
  /** The ready build it starts (built templates). */
  buildId?: string;
}

/** What a sandbox of `r` is the same as another's by: the recipe, or the template's build. */
export const startsFrom = (r: ResolvedTemplate): string =>
  r.buildId ? `${r.templateId}@${r.buildId}` : r.templateId;

/**
 * The templates a team can see: aiva's recipe templates (public, built in), its own
 * builds, and other teams' public ones. Names resolve own first, then built-in, then public.
 */
export class TemplateCatalog {
  private readonly changeListeners: ((templateId: string) => Promise<void>)[] = [];

  constructor(
    private readonly db: Database,
    private readonly nodes: Nodes,
  ) {}

  /** The recipe templates of every node. */
  async recipes(): Promise<string[]> {
    const each = await Promise.all(this.nodes.all().map((n) => n.templates().catch(() => [])));
    return [...new Set(each.flat())].sort();
  }

  /** The team's template by id or name, or a public one (404 otherwise). */
  async visible(caller: Caller, idOrName: string): Promise<TemplateRow> {
    const rows = await this.db
      .select()
      .from(templates)
      .where(
        and(
          or(eq(templates.id, idOrName), eq(templates.name, idOrName)),
          or(eq(templates.teamId, caller.teamId), eq(templates.public, true)),
        ),
      );
    const row =
      rows.find((r) => r.teamId === caller.teamId && r.id === idOrName) ??
      rows.find((r) => r.teamId === caller.teamId) ??
      rows.find((r) => r.id === idOrName) ??
      rows[0];
    if (!row) throw new NotFoundError(`template "${idOrName}" not found`);
    return row;
  }

  /** The team's own template by id or name (404 otherwise, also for another team's public one). */
  async own(caller: Caller, idOrName: string): Promise<TemplateRow> {
    const row = await this.visible(caller, idOrName);
    if (row.teamId !== caller.teamId) throw new NotFoundError(`template "${idOrName}" not found`);
    return row;
  }

  /**
   * What `ref` (`name[:tag]`, or a template id) starts: a recipe, or the ready build its
   * tag names. Undefined when no template by that name is visible.
   */
  async resolve(caller: Caller, ref: string): Promise<ResolvedTemplate | undefined> {
    const { name, tag } = parseTemplateRef(ref);
    const own = await this.visible(caller, name).catch(() => undefined);
    if (!own || own.teamId !== caller.teamId) {
      if ((await this.recipes()).includes(name)) {
        if (tag && tag !== DEFAULT_TAG)
          throw new InvalidRequestError(`tag '${tag}' does not exist for template '${name}'`);
        return { templateId: name, alias: name, node: name };
      }
    }
    if (!own) return undefined;
    const build = await this.buildOfTag(own, tag);
    if (!build?.definition)
      throw new InvalidRequestError(
        tag
          ? `tag '${tag}' does not exist for template '${name}'`
          : `template '${name}' has no ready build yet`,
      );
    return {
      templateId: own.id,
      alias: own.name,
      node: build.definition as unknown as TemplateDefinition,
      context: build.context ?? undefined,
      row: own,
      buildId: build.id,
    };
  }

  /**
   * `ref` as the operator names it (`aiva up --warm-pool`): a recipe, or any team's
   * template by id, or by a name only one team uses, with an optional tag. Undefined when
   * there is none; an error when the name is ambiguous or has no ready build.
   */
  async resolveForOperator(ref: string): Promise<ResolvedTemplate | undefined> {
    const { name } = parseTemplateRef(ref);
    if ((await this.recipes()).includes(name))
      return this.resolve({ teamId: '', keyId: '', scopes: [] }, ref);
    const rows = await this.db
      .select({ id: templates.id, teamId: templates.teamId })
      .from(templates)
      .where(or(eq(templates.id, name), eq(templates.name, name)));
    const row = rows.find((r) => r.id === name) ?? rows[0];
    if (!row) return undefined;
    if (rows.length > 1 && row.id !== name)
      throw new InvalidRequestError(`${rows.length} teams have a template named "${name}": give its id`);
    return this.resolve({ teamId: row.teamId, keyId: '', scopes: [] }, ref);
  }

  /**
   * Runs `listener` whenever what a template starts changes: a build became ready, tags
   * moved, the template was deleted (awaited before its layers are freed).
   */
  onChange(listener: (templateId: string) => Promise<void>): void {
    this.changeListeners.push(listener);
  }

  async changed(templateId: string): Promise<void> {
    await Promise.allSettled(this.changeListeners.map((l) => l(templateId)));
  }

  private async buildOfTag(t: TemplateRow, tag?: string): Promise<BuildRow | undefined> {
    const [tagged] = await this.db
      .select()
      .from(templateTags)
      .where(and(eq(templateTags.templateId, t.id), eq(templateTags.tag, tag ?? DEFAULT_TAG)));
    const buildId = tagged?.buildId ?? (tag ? undefined : t.readyBuildId);
    if (!buildId) return undefined;
    const [build] = await this.db.select().from(templateBuilds).where(eq(templateBuilds.id, buildId));
    return build?.status === 'ready' ? build : undefined;
  }

  /** Counts a sandbox started from the template (E2B's spawnCount, lastSpawnedAt). */
  async spawned(templateId: string): Promise<void> {
    await this.db
      .update(templates)
      .set({ spawnCount: sql`${templates.spawnCount} + 1`, lastSpawnedAt: new Date() })
      .where(eq(templates.id, templateId));
  }

  /** The team's templates and the public ones, newest first. */
  list(caller: Caller): Promise<TemplateRow[]> {
    return this.db
      .select()
      .from(templates)
      .where(or(eq(templates.teamId, caller.teamId), eq(templates.public, true)))
      .orderBy(desc(templates.createdAt));
  }

  /** The newest build of each of `templateIds`, in one query. */
  async latestBuilds(templateIds: string[]): Promise<Map<string, BuildRow>> {
    if (templateIds.length === 0) return new Map();
    const rows = await this.db
      .selectDistinctOn([templateBuilds.templateId])
      .from(templateBuilds)
      .where(inArray(templateBuilds.templateId, templateIds))
      .orderBy(templateBuilds.templateId, desc(templateBuilds.createdAt));
    return new Map(rows.map((b) => [b.templateId, b]));
  }

  builds(templateId: string): Promise<BuildRow[]> {
    return this.db
      .select()
      .from(templateBuilds)
      .where(eq(templateBuilds.templateId, templateId))
      .orderBy(desc(templateBuilds.createdAt));
  }

  /**
   * Deletes the team's template (its builds, tags and logs) and frees the layers no other
   * build uses. Refused (400) while sandboxes run from it.
   */
  async delete(caller: Caller, idOrName: string): Promise<void> {
    const row = await this.own(caller, idOrName);
    const live = await this.db
      .select({ id: sandboxes.id })
      .from(sandboxes)
      .where(
        and(eq(sandboxes.templateId, row.id), inArray(sandboxes.state, ['creating', 'running', 'paused'])),
      );
    if (live.length > 0)
      throw new InvalidRequestError(
        `template ${row.name} is used by ${live.length} running or paused sandbox(es): kill them first`,
      );
    const builds = await this.builds(row.id);
    if (builds.some((b) => b.status === 'building'))
      throw new ConflictError(`template ${row.name} is being built: wait for the build to end`);
    const mine = new Set(builds.flatMap((b) => b.layers ?? []));
    await this.db.delete(templates).where(eq(templates.id, row.id));
    await this.changed(row.id);
    const others = await this.db
      .select({ layers: templateBuilds.layers })
      .from(templateBuilds)
      .where(ne(templateBuilds.templateId, row.id));
    for (const o of others) for (const l of o.layers ?? []) mine.delete(l);
    // Every node may hold them (a template built on one runs on others).
    if (mine.size > 0) await Promise.allSettled(this.nodes.all().map((n) => n.removeLayers([...mine])));
  }

  async setPublic(caller: Caller, idOrName: string, isPublic: boolean): Promise<TemplateRow> {
    const row = await this.own(caller, idOrName);
    const [updated] = await this.db
      .update(templates)
      .set({ public: isPublic, updatedAt: new Date() })
      .where(eq(templates.id, row.id))
      .returning();
    return updated as TemplateRow;
  }

  /** Gives `tags` to the ready build `target` (`name:tag`) names. */
  async assignTags(
    caller: Caller,
    target: string,
    tags: string[],
  ): Promise<{ buildID: string; tags: string[] }> {
    const { name, tag } = parseTemplateRef(target);
    const row = await this.own(caller, name);
    const build = await this.buildOfTag(row, tag);
    if (!build)
      throw new NotFoundError(`template '${target}' has no ready build${tag ? ` tagged ${tag}` : ''}`);
    if (tags.length === 0) throw new InvalidRequestError('no tags to assign');
    for (const t of tags.map(checkTag))
      await this.db
        .insert(templateTags)
        .values({ templateId: row.id, tag: t, buildId: build.id })
        .onConflictDoUpdate({
          target: [templateTags.templateId, templateTags.tag],
          set: { buildId: build.id, createdAt: new Date() },
        });
    await this.changed(row.id);
    return { buildID: build.id, tags };
  }

  async removeTags(caller: Caller, name: string, tags: string[]): Promise<void> {
    const row = await this.own(caller, parseTemplateRef(name).name);
    for (const t of tags) checkTag(t);
    await this.db
      .delete(templateTags)
      .where(and(eq(templateTags.templateId, row.id), inArray(templateTags.tag, tags)));
    await this.changed(row.id);
  }

  async tags(
    caller: Caller,
    idOrName: string,
  ): Promise<{ tag: string; buildID: string; createdAt: string }[]> {
    const row = await this.visible(caller, idOrName);
    const rows = await this.db
      .select()
      .from(templateTags)
      .where(eq(templateTags.templateId, row.id))
      .orderBy(desc(templateTags.createdAt));
    return rows.map((r) => ({ tag: r.tag, buildID: r.buildId, createdAt: r.createdAt.toISOString() }));
  }

  /** E2B's alias lookup: the template, 403 if another team keeps it private, 404 if none. */
  async alias(caller: Caller, alias: string): Promise<{ templateID: string; public: boolean }> {
    const { name } = parseTemplateRef(alias);
    const [own] = await this.db
      .select()
      .from(templates)
      .where(and(eq(templates.teamId, caller.teamId), eq(templates.name, name)));
    if (own) return { templateID: own.id, public: own.public };
    if ((await this.recipes()).includes(name)) return { templateID: name, public: true };
    const others = await this.db.select().from(templates).where(eq(templates.name, name));
    const pub = others.find((o) => o.public);
    if (pub) return { templateID: pub.id, public: true };
    if (others.length > 0) throw new ForbiddenError(`template alias "${name}" belongs to another team`);
    throw new NotFoundError(`template alias "${name}" not found`);
  }
}
