/**
 * The gateway's configuration: the JSON object E2B's SDK passes as `mcp-gateway --config`
 * (the `mcp` option of `Sandbox.create`), one key per MCP server. aiva's gateway runs
 * servers it can start on stdio inside the sandbox:
 * - `"npm/<package>[@version]": { args?, envs? }` — `npx -y <package> …args`;
 * - `"pypi/<package>[==version]": { command?, args?, envs? }` — installed with pip into a
 *   virtual environment of its own, then its console script `command` (default: the
 *   package's name) is run;
 * - `"<name>": { runCmd, envs? }` — a custom command, run by `/bin/sh -c`.
 * Each may add `initTimeoutSeconds` (default 120: installing counts). Anything else —
 * E2B's catalogue servers, which are Docker images, and `github/…` repositories — is
 * refused, naming the key.
 */

export interface ServerSpec {
  /** The config key, which names the server in errors and tool-name clashes. */
  name: string;
  kind: 'npm' | 'pypi' | 'command';
  /** What to install first (pypi), then what to run. */
  install?: { command: string; args: string[] };
  command: string;
  args: string[];
  env: Record<string, string>;
  initTimeoutMs: number;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULT_INIT_TIMEOUT_S = 120;
/** Where pypi servers get their virtual environments. */
export const VENV_ROOT = '/var/lib/mcp-gateway/venvs';

const NPM_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*(@[A-Za-z0-9._^~<>=*+-]+)?$/;
const PYPI_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*(==[A-Za-z0-9.+!-]+)?$/;
const SERVER_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function object(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ConfigError(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string'))
    throw new ConfigError(`${what} must be an array of strings`);
  return v as string[];
}

function env(v: unknown, what: string): Record<string, string> {
  if (v === undefined) return {};
  const o = object(v, what);
  for (const [k, x] of Object.entries(o)) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new ConfigError(`${what}: "${k}" is not a variable name`);
    if (typeof x !== 'string') throw new ConfigError(`${what}.${k} must be a string`);
  }
  return o as Record<string, string>;
}

function timeout(v: unknown, what: string): number {
  if (v === undefined) return DEFAULT_INIT_TIMEOUT_S * 1000;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 3600)
    throw new ConfigError(`${what} must be a number of seconds, 1–3600`);
  return v * 1000;
}

const ALLOWED: Record<ServerSpec['kind'], string[]> = {
  npm: ['args', 'envs', 'initTimeoutSeconds'],
  pypi: ['command', 'args', 'envs', 'initTimeoutSeconds'],
  command: ['runCmd', 'envs', 'initTimeoutSeconds'],
};

/** The servers `text` (JSON) asks for; a ConfigError naming what is wrong otherwise. */
export function parseGatewayConfig(text: string): ServerSpec[] {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`the config is not JSON: ${(e as Error).message}`);
  }
  const config = object(raw, 'the config');
  const specs: ServerSpec[] = [];
  for (const [key, value] of Object.entries(config)) {
    const o = object(value, `"${key}"`);
    const kind: ServerSpec['kind'] = key.startsWith('npm/')
      ? 'npm'
      : key.startsWith('pypi/')
        ? 'pypi'
        : key.includes('/')
          ? unsupported(key)
          : 'runCmd' in o
            ? 'command'
            : unsupported(key);
    for (const field of Object.keys(o))
      if (!ALLOWED[kind].includes(field))
        throw new ConfigError(
          `"${key}": unknown field "${field}" (a ${kind} server takes ${ALLOWED[kind].join(', ')})`,
        );
    const common = {
      name: key,
      kind,
      env: env(o.envs, `"${key}".envs`),
      initTimeoutMs: timeout(o.initTimeoutSeconds, `"${key}".initTimeoutSeconds`),
    };
    if (kind === 'npm') {
      const pkg = key.slice('npm/'.length);
      if (!NPM_NAME.test(pkg)) throw new ConfigError(`"${key}": "${pkg}" is not an npm package name`);
      specs.push({ ...common, command: 'npx', args: ['-y', pkg, ...strings(o.args, `"${key}".args`)] });
    } else if (kind === 'pypi') {
      const pkg = key.slice('pypi/'.length);
      if (!PYPI_NAME.test(pkg)) throw new ConfigError(`"${key}": "${pkg}" is not a Python package name`);
      const base = pkg.split('==')[0] ?? pkg;
      const command = o.command ?? base;
      if (typeof command !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(command))
        throw new ConfigError(`"${key}".command must be the name of the package's console script`);
      const venv = `${VENV_ROOT}/${base.toLowerCase()}`;
      specs.push({
        ...common,
        install: {
          command: '/bin/sh',
          args: [
            '-c',
            'python3 -m venv "$1" && "$1/bin/pip" install --disable-pip-version-check -q "$2" >&2',
            'install',
            venv,
            pkg,
          ],
        },
        command: `${venv}/bin/${command}`,
        args: strings(o.args, `"${key}".args`),
      });
    } else {
      if (!SERVER_NAME.test(key))
        throw new ConfigError(`"${key}" is not a server name (letters, digits, . _ -)`);
      if (typeof o.runCmd !== 'string' || !o.runCmd.trim())
        throw new ConfigError(`"${key}".runCmd must be a command line`);
      specs.push({ ...common, command: '/bin/sh', args: ['-c', o.runCmd] });
    }
  }
  if (specs.length === 0) throw new ConfigError('the config names no MCP server');
  return specs;
}

function unsupported(key: string): never {
  throw new ConfigError(
    `"${key}": aiva's gateway runs npm/<package>, pypi/<package> and custom { "runCmd": … } servers; ` +
      (key.startsWith('github/')
        ? 'servers built from GitHub repositories are not supported'
        : "E2B's catalogue servers (Docker images) are not available here"),
  );
}
