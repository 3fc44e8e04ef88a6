import type { EnvironmentPort, RestartPolicy } from '../db/environments-schema.js';
import { parsePort } from './environment-ports.js';
import { InvalidRequestError } from './errors.js';

/** An environment's name: what `aiva init` accepts. */
export const ENVIRONMENT_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
export const NAME_RULE = 'a lower-case letter or digit, then up to 62 lower-case letters, digits or "-"';

export function checkName(name: string): void {
  if (!ENVIRONMENT_NAME.test(name))
    throw new InvalidRequestError(`environment name "${name}" is not valid: ${NAME_RULE}`);
}

export const RESTART_POLICIES: readonly RestartPolicy[] = ['always', 'on-failure', 'no'];

export function checkRestart(value: string): RestartPolicy {
  if (!(RESTART_POLICIES as readonly string[]).includes(value))
    throw new InvalidRequestError(`restart must be one of ${RESTART_POLICIES.join(', ')}, not "${value}"`);
  return value as RestartPolicy;
}

/** The settings `aiva config` reads and writes, as key → value text. */
export interface EnvironmentSettings {
  template: string;
  cpus: number | null;
  memoryMb: number | null;
  diskMb: number | null;
  ports: EnvironmentPort[];
  env: Record<string, string>;
  cmd: string | null;
  restart: RestartPolicy;
}

export const SETTING_KEYS = ['template', 'cpus', 'memory', 'disk', 'ports', 'cmd', 'restart', 'env.<NAME>'];
const ENV_KEY = /^env\.([A-Za-z_][A-Za-z0-9_]{0,127})$/;

function positive(key: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new InvalidRequestError(`${key} must be a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

/** The ports of `a,b,c` (each HOST:GUEST or BIND:HOST:GUEST; empty: none), no host port twice. */
export function parsePorts(specs: string[]): EnvironmentPort[] {
  const ports = specs.filter((s) => s.trim() !== '').map(parsePort);
  const seen = new Set<string>();
  for (const p of ports) {
    const k = `${p.bind}:${p.host}`;
    if (seen.has(k)) throw new InvalidRequestError(`host port ${k} is given twice`);
    seen.add(k);
  }
  return ports;
}

/** `s` with `key` set to `value` (text, as `aiva config set key=value` gives it). */
export function withSetting(s: EnvironmentSettings, key: string, value: string): EnvironmentSettings {
  const env = ENV_KEY.exec(key);
  if (env?.[1]) {
    if (value.length > 32 * 1024) throw new InvalidRequestError(`${key} is longer than 32 KiB`);
    return { ...s, env: { ...s.env, [env[1]]: value } };
  }
  switch (key) {
    case 'template':
      if (!/^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$/.test(value))
        throw new InvalidRequestError(`template "${value}" is not a template name`);
      return { ...s, template: value };
    case 'cpus':
      return { ...s, cpus: positive(key, value, 1, 64) };
    case 'memory':
      return { ...s, memoryMb: positive(key, value, 128, 1024 * 1024) };
    case 'disk':
      return { ...s, diskMb: positive(key, value, 256, 16 * 1024 * 1024) };
    case 'ports':
      return { ...s, ports: parsePorts(value.split(',')) };
    case 'cmd':
      if (value.trim() === '') throw new InvalidRequestError('cmd must not be empty');
      return { ...s, cmd: value };
    case 'restart':
      return { ...s, restart: checkRestart(value) };
    default:
      throw unknownKey(key);
  }
}

/** `s` with `key` back to its default (sizes: the template's; no ports; the variable gone). */
export function withoutSetting(s: EnvironmentSettings, key: string): EnvironmentSettings {
  const env = ENV_KEY.exec(key);
  if (env?.[1]) {
    const { [env[1]]: _gone, ...rest } = s.env;
    return { ...s, env: rest };
  }
  switch (key) {
    case 'cpus':
      return { ...s, cpus: null };
    case 'memory':
      return { ...s, memoryMb: null };
    case 'disk':
      return { ...s, diskMb: null };
    case 'ports':
      return { ...s, ports: [] };
    case 'restart':
      return { ...s, restart: 'on-failure' };
    case 'template':
    case 'cmd':
      throw new InvalidRequestError(`${key} cannot be unset: set another value`);
    default:
      throw unknownKey(key);
  }
}

function unknownKey(key: string): InvalidRequestError {
  return new InvalidRequestError(`unknown setting "${key}": the settings are ${SETTING_KEYS.join(', ')}`);
}

/** The settings as `aiva config ls` shows them: key → text. */
export function settingsText(s: EnvironmentSettings): Record<string, string> {
  const out: Record<string, string> = {
    template: s.template,
    cpus: s.cpus === null ? '' : String(s.cpus),
    memory: s.memoryMb === null ? '' : String(s.memoryMb),
    disk: s.diskMb === null ? '' : String(s.diskMb),
    ports: s.ports
      .map((p) => `${p.bind.includes(':') ? `[${p.bind}]` : p.bind}:${p.host}:${p.guest}`)
      .join(','),
    cmd: s.cmd ?? '',
    restart: s.restart,
  };
  for (const [k, v] of Object.entries(s.env)) out[`env.${k}`] = v;
  return out;
}
