import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';

/** A template recipe: `images/<name>/recipe.json`. Data, not code. */
export const RecipeSchema = Type.Object(
  {
    name: Type.String({ pattern: '^[a-z0-9][a-z0-9-]*$' }),
    /** Other names the template answers to (E2B's `code-interpreter` for `code-interpreter-v1`). */
    aliases: Type.Optional(Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9-]*$' }))),
    description: Type.String(),
    debian: Type.Object(
      {
        suite: Type.String({ minLength: 1 }),
        variant: Type.Union([Type.Literal('minbase'), Type.Literal('apt'), Type.Literal('important')]),
        /** One-line apt sources, e.g. `deb http://deb.debian.org/debian bookworm main`. */
        sources: Type.Array(Type.String({ pattern: '^deb ' }), { minItems: 1 }),
      },
      { additionalProperties: false },
    ),
    packages: Type.Array(Type.String({ pattern: '^[a-z0-9][a-z0-9+.-]*$' })),
    user: Type.Object(
      {
        name: Type.String({ pattern: '^[a-z_][a-z0-9_-]*$' }),
        uid: Type.Integer({ minimum: 1000, maximum: 65533 }),
        sudo: Type.Boolean(),
        shell: Type.String({ pattern: '^/' }),
      },
      { additionalProperties: false },
    ),
    /** Shell commands run as root inside the new root filesystem, in order. */
    run: Type.Array(Type.String()),
    /**
     * Files put into the root filesystem before the run commands: absolute path in it →
     * the file, relative to the recipe's directory (resolved by `loadRecipe` to a path
     * relative to the recipes directory). Their content is part of the Debian layer's hash.
     */
    files: Type.Optional(
      Type.Record(
        Type.String({ pattern: '^(/[A-Za-z0-9._-]+)+$' }),
        Type.String({ pattern: '^[A-Za-z0-9._/-]+$' }),
      ),
    ),
    disk: Type.Object(
      { sizeMiB: Type.Integer({ minimum: 64, maximum: 1_048_576 }) },
      { additionalProperties: false },
    ),
    /**
     * What the template's sandboxes start with and when they are ready, as a built
     * template's start and ready commands (run by envd as the template's user, in its
     * workdir; a create returns once `ready` exits 0). Not part of the Debian layer.
     */
    start: Type.Optional(
      Type.Object(
        { cmd: Type.String({ minLength: 1 }), ready: Type.Optional(Type.String({ minLength: 1 })) },
        { additionalProperties: false },
      ),
    ),
    defaults: Type.Object(
      {
        user: Type.String(),
        workdir: Type.String({ pattern: '^/' }),
        vcpus: Type.Integer({ minimum: 1, maximum: 64 }),
        memoryMiB: Type.Integer({ minimum: 64 }),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export type Recipe = Static<typeof RecipeSchema>;

/**
 * A recipe as its file may say it: with `extends`, another recipe's Debian suite, user,
 * disk and defaults are taken as they are unless given, and its packages and run
 * commands come first (one Debian layer still holds them all, built by one mmdebstrap).
 */
const RecipeFileSchema = Type.Object(
  {
    ...RecipeSchema.properties,
    extends: Type.Optional(Type.String({ pattern: '^[a-z0-9][a-z0-9-]*$' })),
    debian: Type.Optional(RecipeSchema.properties.debian),
    packages: Type.Optional(RecipeSchema.properties.packages),
    user: Type.Optional(RecipeSchema.properties.user),
    run: Type.Optional(RecipeSchema.properties.run),
    disk: Type.Optional(RecipeSchema.properties.disk),
    defaults: Type.Optional(Type.Partial(RecipeSchema.properties.defaults)),
  },
  { additionalProperties: false },
);
type RecipeFile = Static<typeof RecipeFileSchema>;

/** The guest kernel recipe: `images/kernel/recipe.json`. */
export const KernelRecipeSchema = Type.Object(
  {
    /** Debian package (or metapackage) that provides /boot/vmlinuz-*. */
    package: Type.String(),
    /** Module names loaded by the initramfs, with their dependencies first. */
    modules: Type.Array(Type.String({ pattern: '^[a-z0-9_-]+$' })),
    /** Debian package providing a static /bin/busybox for the initramfs. */
    busybox: Type.String(),
  },
  { additionalProperties: false },
);
export type KernelRecipe = Static<typeof KernelRecipeSchema>;

export class RecipeError extends Error {
  override name = 'RecipeError';
}

function parse<T>(schema: TSchema, text: string, file: string): T {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new RecipeError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return check<T>(schema, data, file);
}

function check<T>(schema: TSchema, data: unknown, file: string): T {
  if (!Value.Check(schema, data)) {
    const problems = [...Value.Errors(schema, data)]
      .slice(0, 5)
      .map((e) => `${e.instancePath || '/'} ${e.message}`);
    throw new RecipeError(`${file}: invalid recipe: ${problems.join('; ')}`);
  }
  return data as T;
}

export async function loadRecipe(recipesDir: string, name: string, seen: string[] = []): Promise<Recipe> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name) || name === 'kernel') {
    throw new RecipeError(`"${name}" is not a template name`);
  }
  let file = join(recipesDir, name, 'recipe.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const canonical = (await recipeAliases(recipesDir)).get(name);
    if (!canonical) throw new RecipeError(`unknown template "${name}": no recipe at ${file}`);
    file = join(recipesDir, canonical, 'recipe.json');
    text = await readFile(file, 'utf8');
  }
  const own = parse<RecipeFile>(RecipeFileSchema, text, file);
  let recipe: Recipe;
  if (own.extends) {
    if (seen.includes(own.extends) || own.extends === own.name)
      throw new RecipeError(`${file}: extends "${own.extends}", which extends it back`);
    const parent = await loadRecipe(recipesDir, own.extends, [...seen, own.name]);
    const { extends: _, ...rest } = own;
    recipe = check<Recipe>(
      RecipeSchema,
      {
        ...rest,
        debian: own.debian ?? parent.debian,
        packages: [...new Set([...parent.packages, ...(own.packages ?? [])])].sort(),
        user: own.user ?? parent.user,
        run: [...parent.run, ...(own.run ?? [])],
        files: { ...parent.files, ...recipeFiles(own) },
        disk: own.disk ?? parent.disk,
        defaults: { ...parent.defaults, ...own.defaults },
      },
      file,
    );
  } else {
    recipe = check<Recipe>(RecipeSchema, { ...own, files: recipeFiles(own) }, file);
  }
  if (Object.keys(recipe.files ?? {}).length === 0) delete recipe.files;
  if (recipe.name !== name && !recipe.aliases?.includes(name))
    throw new RecipeError(`${file}: name is "${recipe.name}", expected "${name}"`);
  if (recipe.user.sudo && !recipe.packages.includes('sudo')) {
    throw new RecipeError(`${file}: user.sudo needs the "sudo" package in packages`);
  }
  return recipe;
}

/** A recipe file's `files`, their sources made relative to the recipes directory. */
function recipeFiles(own: RecipeFile): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [dest, src] of Object.entries(own.files ?? {})) {
    const rel = posix.normalize(`${own.name}/${src}`);
    if (!rel.startsWith(`${own.name}/`) || src.split('/').includes('..'))
      throw new RecipeError(`recipe ${own.name}: file "${src}" is outside its directory`);
    out[dest] = rel;
  }
  return out;
}

/** Every recipe's aliases in `recipesDir`: alias → the recipe's name. Unreadable recipes are skipped. */
export async function recipeAliases(recipesDir: string): Promise<Map<string, string>> {
  const aliases = new Map<string, string>();
  for (const e of await readdir(recipesDir, { withFileTypes: true })) {
    if (!e.isDirectory() || e.name === 'kernel' || e.name === 'guest') continue;
    const text = await readFile(join(recipesDir, e.name, 'recipe.json'), 'utf8').catch(() => undefined);
    if (text === undefined) continue;
    let data: { name?: unknown; aliases?: unknown };
    try {
      data = JSON.parse(text);
    } catch {
      continue;
    }
    if (data.name !== e.name || !Array.isArray(data.aliases)) continue;
    for (const a of data.aliases) if (typeof a === 'string') aliases.set(a, e.name);
  }
  return aliases;
}

export async function loadKernelRecipe(recipesDir: string): Promise<KernelRecipe> {
  const file = join(recipesDir, 'kernel', 'recipe.json');
  return parse<KernelRecipe>(KernelRecipeSchema, await readFile(file, 'utf8'), file);
}

/** JSON with object keys sorted, so equal data always hashes the same. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => a.localeCompare(b)))
      : v,
  );
}

/** sha256 (hex) of the canonical form of `parts`. */
export function contentHash(parts: unknown): string {
  return createHash('sha256').update(canonical(parts)).digest('hex');
}
