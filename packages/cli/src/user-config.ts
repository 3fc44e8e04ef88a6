import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { isMap, isScalar, LineCounter, type Node, parseDocument, type YAMLMap } from 'yaml';

/** A size profile: what `--profile` gives an environment (unset: the template's). */
export interface Profile {
  cpus?: number;
  /** MiB. */
  memory?: number;
  /** MiB. */
  disk?: number;
}

export interface UserConfig {
  defaults: { template?: string; profile?: string };
  profiles: Record<string, Profile>;
}

/** The profiles every aiva has; a config file may redefine them or add others. */
export const BUILT_IN_PROFILES: Record<string, Profile> = {
  minimal: { cpus: 1, memory: 512 },
  standard: { cpus: 2, memory: 2048 },
  performance: { cpus: 4, memory: 8192 },
};

/** The files read, strongest first: the user's, then the host's. */
export function configFiles(): string[] {
  return [join(homedir(), '.aiva', 'config.yaml'), '/etc/aiva/config.yaml'];
}

/** A config file that is not as it should be: the message names the file, line and column. */
export class UserConfigError extends Error {}

const SIZE = /^(\d+)\s*([MG]i?B?|[MG])?$/i;

/** `512`, `512M`, `2G`, `2GiB` … as MiB (a bare number is MiB). */
export function parseSize(v: string | number): number | undefined {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v : undefined;
  const m = SIZE.exec(v.trim());
  if (!m?.[1]) return undefined;
  const n = Number(m[1]);
  return m[2]?.[0]?.toUpperCase() === 'G' ? n * 1024 : n;
}

/**
 * Reads one config file (`defaults: {template, profile}`, `profiles: {NAME: {cpus,
 * memory, disk}}`); undefined if it does not exist. Any YAML error, unknown key or value
 * of the wrong type is a UserConfigError saying `file:line:column: what`.
 */
export async function readConfigFile(file: string): Promise<UserConfig | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UserConfigError(`${file}: ${(e as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const at = (node: { range?: [number, number, number?] | null } | null | undefined) => {
    const p = lines.linePos(node?.range?.[0] ?? 0);
    return `${file}:${p.line}:${p.col}`;
  };
  const [first] = doc.errors;
  if (first) {
    const p = lines.linePos(first.pos[0]);
    throw new UserConfigError(`${file}:${p.line}:${p.col}: ${first.message.split('\n')[0]}`);
  }
  const config: UserConfig = { defaults: {}, profiles: {} };
  if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return config;
  const map = (node: unknown, what: string): YAMLMap => {
    if (!isMap(node)) throw new UserConfigError(`${at(node as Node)}: ${what} must be a mapping`);
    return node;
  };
  const entries = (m: YAMLMap, known: string[], what: string) =>
    m.items.map((pair) => {
      const key = isScalar(pair.key) ? String(pair.key.value) : '';
      if (!known.includes(key))
        throw new UserConfigError(
          `${at(pair.key as Node)}: unknown key "${key}" in ${what} (known: ${known.join(', ')})`,
        );
      return { key, value: pair.value as Node | null };
    });
  const text_ = (node: Node | null, what: string, pattern: RegExp): string => {
    if (!isScalar(node) || typeof node.value !== 'string' || !pattern.test(node.value))
      throw new UserConfigError(`${at(node)}: ${what} must be a string matching ${pattern}`);
    return node.value;
  };
  const whole = (node: Node | null, what: string, min: number, max: number): number => {
    const v = isScalar(node) ? node.value : undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      throw new UserConfigError(`${at(node)}: ${what} must be a whole number from ${min} to ${max}`);
    return v;
  };
  const size = (node: Node | null, what: string): number => {
    const v = isScalar(node) ? node.value : undefined;
    const mib = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : undefined;
    if (mib === undefined)
      throw new UserConfigError(`${at(node)}: ${what} must be a size such as 512M or 2G (a number: MiB)`);
    return mib;
  };
  for (const { key, value } of entries(map(doc.contents, 'the file'), ['defaults', 'profiles'], 'the file')) {
    if (key === 'defaults')
      for (const d of entries(map(value, 'defaults'), ['template', 'profile'], 'defaults'))
        config.defaults[d.key as 'template' | 'profile'] = text_(
          d.value,
          `defaults.${d.key}`,
          /^[A-Za-z0-9][\w.:/-]*$/,
        );
    else
      for (const p of map(value, 'profiles').items) {
        const name = isScalar(p.key) ? String(p.key.value) : '';
        if (!/^[a-z0-9][a-z0-9-]*$/.test(name))
          throw new UserConfigError(
            `${at(p.key as Node)}: a profile's name is lower-case letters, digits and "-"`,
          );
        const profile: Profile = {};
        for (const f of entries(
          map(p.value, `profile ${name}`),
          ['cpus', 'memory', 'disk'],
          `profile ${name}`,
        )) {
          if (f.key === 'cpus') profile.cpus = whole(f.value, `profiles.${name}.cpus`, 1, 64);
          else profile[f.key as 'memory' | 'disk'] = size(f.value, `profiles.${name}.${f.key}`);
        }
        config.profiles[name] = profile;
      }
  }
  return config;
}

/** The config files merged (the user's over the host's over the built-in profiles). */
export async function loadUserConfig(files = configFiles()): Promise<UserConfig> {
  const merged: UserConfig = { defaults: {}, profiles: { ...BUILT_IN_PROFILES } };
  for (const file of [...files].reverse()) {
    const c = await readConfigFile(file);
    if (!c) continue;
    Object.assign(merged.defaults, c.defaults);
    Object.assign(merged.profiles, c.profiles);
  }
  return merged;
}

/**
 * What an environment is made with: flags first, then `AIVA_TEMPLATE`/`AIVA_PROFILE`, then
 * the files' defaults, then `base` and no profile (the template's size).
 */
export async function environmentDefaults(flags: {
  template?: string;
  profile?: string;
}): Promise<{ template: string; profile?: Profile }> {
  const config = await loadUserConfig();
  const template = flags.template ?? process.env.AIVA_TEMPLATE ?? config.defaults.template ?? 'base';
  const name = flags.profile ?? process.env.AIVA_PROFILE ?? config.defaults.profile;
  if (name === undefined) return { template };
  const profile = config.profiles[name];
  if (!profile)
    throw new UserConfigError(`no profile "${name}" (profiles: ${Object.keys(config.profiles).join(', ')})`);
  return { template, profile };
}
