import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { EnvironmentView } from '@aiva/server';
import { type Command, InvalidArgumentError } from 'commander';
import { Sandbox } from 'e2b';
import { stringify } from 'yaml';
import { apiTarget, callApi } from '../api-client.js';
import { shellQuote } from '../command-line.js';
import { MCP_GATEWAY_TEMPLATE, mcpGatewayConfigFor } from '../mcp-gateway-config.js';
import { formatTable } from '../table.js';
import { environmentDefaults, parseSize } from '../user-config.js';
import {
  classifyDeploySource,
  deployImage,
  environmentTemplate,
  registryCredentials,
} from './deploy-image.js';

const path = (name: string) => `/v1/environments/${encodeURIComponent(name)}`;

const whole = (what: string) => (v: string) => {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1) throw new InvalidArgumentError(`${what} must be a whole number above 0`);
  return n;
};
const size = (what: string) => (v: string) => {
  const n = parseSize(v);
  if (n === undefined)
    throw new InvalidArgumentError(`${what} must be a size such as 512M or 2G (a number: MiB)`);
  return n;
};
const collect = (v: string, all: string[] = []) => [...all, v];
const restartPolicy = (v: string) => {
  if (!['always', 'on-failure', 'no'].includes(v))
    throw new InvalidArgumentError('restart is always, on-failure or no');
  return v;
};

/** The service's command for a directory that does not say: Procfile, package.json's start, main.py. */
export async function defaultCommand(dir: string): Promise<string | undefined> {
  const procfile = await readFile(join(dir, 'Procfile'), 'utf8').catch(() => undefined);
  if (procfile) {
    const lines = procfile.split('\n').map((l) => /^([\w-]+):\s*(.+)$/.exec(l.trim()));
    const line = lines.find((m) => m?.[1] === 'web') ?? lines.find(Boolean);
    if (line?.[2]) return line[2];
  }
  const pkg = await readFile(join(dir, 'package.json'), 'utf8').catch(() => undefined);
  if (pkg) {
    const scripts = (JSON.parse(pkg) as { scripts?: Record<string, string> }).scripts;
    if (scripts?.start) return 'npm start';
  }
  if (await stat(join(dir, 'main.py')).catch(() => undefined)) return 'python3 main.py';
  return undefined;
}

/** The directory as a tar.gz (the host's `tar`). */
function tarOf(dir: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', ['-czf', '-', '-C', dir, '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    tar.stdout.on('data', (d: Buffer) => out.push(d));
    tar.stderr.on('data', (d: Buffer) => {
      err += d;
    });
    tar.on('error', reject);
    tar.on('close', (code) =>
      code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`tar of ${dir} failed: ${err.trim()}`)),
    );
  });
}

function printEnvironments(list: EnvironmentView[], format: string): void {
  if (format === 'json') {
    console.log(JSON.stringify(list, null, 2));
    return;
  }
  if (format === 'yaml') {
    process.stdout.write(stringify(list));
    return;
  }
  const rows = list.map((e) => [
    e.name,
    e.state,
    e.sandboxID ?? '-',
    e.settings.template ?? '',
    e.settings.ports || '-',
    e.settings.cmd ? `${e.settings.cmd} (${e.settings.restart})` : '-',
  ]);
  process.stdout.write(formatTable(['NAME', 'STATE', 'SANDBOX', 'TEMPLATE', 'PORTS', 'SERVICE'], rows));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Named environments: `aiva init|start|stop|status|deploy|logs|config|rm`, each a call on
 * the running server's `/v1/environments` routes (and, to upload a directory, envd's
 * files API through the `e2b` SDK).
 */
export function registerEnvironmentCommands(program: Command): void {
  program
    .command('init')
    .description('create a named environment and its volume (mounted at /data); `aiva start` runs it')
    .argument('<name>', 'lower-case letters, digits and "-"')
    .option('--template <template>', 'its template (default: config.yaml, else base)')
    .option('--profile <profile>', 'its size: minimal, standard, performance or one of config.yaml')
    .option(
      '--mcp <command>',
      'its service is this stdio MCP server behind the mcp-gateway (template mcp-gateway unless --template); `aiva mcp connect` serves it',
    )
    .action(async (name: string, opts: { template?: string; profile?: string; mcp?: string }) => {
      // Checked before anything is made: a wrong command leaves no environment.
      const mcpConfig = opts.mcp !== undefined ? mcpGatewayConfigFor(opts.mcp) : undefined;
      const d = await environmentDefaults({
        ...opts,
        ...(mcpConfig && !opts.template ? { template: MCP_GATEWAY_TEMPLATE } : {}),
      });
      const made = await callApi<EnvironmentView>('POST', '/v1/environments', {
        name,
        template: d.template,
        ...(d.profile?.cpus ? { cpus: d.profile.cpus } : {}),
        ...(d.profile?.memory ? { memoryMB: d.profile.memory } : {}),
        ...(d.profile?.disk ? { diskMB: d.profile.disk } : {}),
      });
      if (mcpConfig) {
        const cmd = `mcp-gateway run --config ${shellQuote(JSON.stringify(mcpConfig))}`;
        await callApi('PATCH', `${path(name)}/config`, { set: { cmd, restart: 'always' } }).catch(
          async (e: unknown) => {
            await callApi('DELETE', `${path(name)}?force=true`).catch(() => {});
            throw e;
          },
        );
      }
      console.log(
        `environment ${made.name} created (template ${made.settings.template}${mcpConfig ? ', an MCP server as its service' : ''}); start it with: aiva start ${name}${mcpConfig ? `, then: aiva mcp connect ${name}` : ''}`,
      );
    });

  program
    .command('start')
    .description('start an environment: its kept disk, else a fresh sandbox with its volume')
    .argument('<name>')
    .option('--cpus <n>', 'vCPUs of its next fresh sandbox', whole('cpus'))
    .option('--memory <size>', 'memory of its next fresh sandbox (512M, 2G)', size('memory'))
    .option('--disk <size>', 'disk of its next fresh sandbox', size('disk'))
    .option(
      '--port <[bind:]host:guest>',
      'forward a host port (127.0.0.1 unless a bind address is given); repeatable',
      collect,
    )
    .option(
      '--recreate',
      'make a fresh sandbox when the size differs from the kept one (files outside /data are lost)',
    )
    .action(
      async (
        name: string,
        o: { cpus?: number; memory?: number; disk?: number; port?: string[]; recreate?: boolean },
      ) => {
        const env = await callApi<EnvironmentView>('POST', `${path(name)}/start`, {
          ...(o.cpus ? { cpus: o.cpus } : {}),
          ...(o.memory ? { memoryMB: o.memory } : {}),
          ...(o.disk ? { diskMB: o.disk } : {}),
          ...(o.port ? { ports: o.port } : {}),
          ...(o.recreate ? { recreate: true } : {}),
        });
        console.log(`environment ${env.name} is ${env.state} (sandbox ${env.sandboxID})`);
      },
    );

  program
    .command('stop')
    .description('stop an environment gracefully; its disk is kept for `aiva start`')
    .argument('<name>')
    .option('--force', 'do not wait for the service to end')
    .action(async (name: string, o: { force?: boolean }) => {
      const env = await callApi<EnvironmentView>('POST', `${path(name)}/stop`, { force: Boolean(o.force) });
      console.log(`environment ${env.name} is ${env.state}`);
    });

  program
    .command('rm')
    .description(
      'remove an environment, its sandbox, its volume (its data) and the template its image was built into',
    )
    .argument('<name>')
    .option('--force', 'remove it even while it runs')
    .action(async (name: string, o: { force?: boolean }) => {
      const env = await callApi<EnvironmentView>('GET', path(name));
      await callApi('DELETE', `${path(name)}${o.force ? '?force=true' : ''}`);
      // The template `aiva deploy <name> <image>` built goes with it (unless others use it).
      const built = environmentTemplate(name);
      const dropped =
        env.settings.template === built &&
        (await callApi('DELETE', `/templates/${built}`).then(
          () => true,
          (e: Error) => {
            console.error(`template ${built} is kept: ${e.message}`);
            return false;
          },
        ));
      console.log(`environment ${name} removed${dropped ? ` with its image's template ${built}` : ''}`);
    });

  program
    .command('status')
    .description('the environments (or one), their state, sandbox, ports and service')
    .argument('[name]')
    .option(
      '--format <format>',
      'table, json or yaml',
      (v) => {
        if (!['table', 'json', 'yaml'].includes(v))
          throw new InvalidArgumentError('format is table, json or yaml');
        return v;
      },
      'table',
    )
    .action(async (name: string | undefined, o: { format: string }) => {
      const list = name
        ? [await callApi<EnvironmentView>('GET', path(name))]
        : await callApi<EnvironmentView[]>('GET', '/v1/environments');
      printEnvironments(list, o.format);
    });

  program
    .command('deploy')
    .description(
      'install a directory (to /app) as the environment’s service, or recreate it from an image or a template',
    )
    .argument('<name>')
    .argument(
      '<source>',
      'a directory; an image (a registry reference, a docker save/OCI archive, or with --image an OCI layout directory); or a template name',
    )
    .option(
      '--cmd <command>',
      'the service’s command (default: Procfile, package.json start, main.py; an image’s ENTRYPOINT and CMD)',
    )
    .option('--restart <policy>', 'always, on-failure or no', restartPolicy)
    .option('--image', 'the source is an image (an OCI layout directory, not a directory to install)')
    .option('--registry-username <user>', 'for a private registry (or AIVA_REGISTRY_USERNAME)')
    .option('--registry-password <password>', 'for a private registry (or AIVA_REGISTRY_PASSWORD)')
    .action(
      async (
        name: string,
        sourceArg: string,
        o: {
          cmd?: string;
          restart?: string;
          image?: boolean;
          registryUsername?: string;
          registryPassword?: string;
        },
      ) => {
        const source = await classifyDeploySource(sourceArg, Boolean(o.image));
        if (source.kind === 'archive' || source.kind === 'registry') {
          const credentials = registryCredentials(o);
          const env = await deployImage(name, source, { ...o, credentials }, (line) =>
            process.stderr.write(`${line}\n`),
          );
          console.log(
            `environment ${env.name} runs image ${sourceArg} (template ${env.settings.template}, sandbox ${env.sandboxID}); service: ${env.settings.cmd} (restart ${env.settings.restart})`,
          );
          return;
        }
        if (source.kind === 'template') {
          const env = await callApi<EnvironmentView>('POST', `${path(name)}/deploy`, {
            template: source.name,
            ...(o.cmd ? { cmd: o.cmd } : {}),
            ...(o.restart ? { restart: o.restart } : {}),
          });
          console.log(`environment ${env.name} runs template ${source.name} (sandbox ${env.sandboxID})`);
          return;
        }
        const dir = source.path;
        const cmd = o.cmd ?? (await defaultCommand(dir));
        if (!cmd)
          throw new Error(
            `no command for ${dir}: give --cmd, or add a Procfile, a package.json start script or main.py`,
          );
        const env = await callApi<EnvironmentView>('GET', path(name));
        if (env.state !== 'running' || !env.sandboxID)
          throw new Error(`environment ${name} is not running: aiva start ${name} first`);
        const archive = `/tmp/aiva-deploy-${randomBytes(6).toString('hex')}.tar.gz`;
        const { apiUrl, apiKey } = await apiTarget();
        const sandbox = await Sandbox.connect(env.sandboxID, { apiKey, apiUrl, sandboxUrl: apiUrl });
        const tar = await tarOf(dir);
        await sandbox.files.write(archive, new Blob([new Uint8Array(tar)]));
        const deployed = await callApi<EnvironmentView>('POST', `${path(name)}/deploy`, {
          archive,
          cmd,
          ...(o.restart ? { restart: o.restart } : {}),
        });
        console.log(
          `deployed ${dir} to ${name}:/app; service: ${cmd} (restart ${deployed.settings.restart})`,
        );
      },
    );

  program
    .command('logs')
    .description('the environment’s service log (or its sandbox’s console log)')
    .argument('<name>')
    .option('-f, --follow', 'keep printing what is written')
    .option('--tail <n>', 'the last n lines (default 100)', (v) => {
      if (!/^\d+$/.test(v)) throw new InvalidArgumentError('tail must be a whole number');
      return Number(v);
    })
    .option('--console', 'the sandbox’s console log instead')
    .action(async (name: string, o: { follow?: boolean; tail?: number; console?: boolean }) => {
      const q = new URLSearchParams({ tail: String(o.tail ?? 100) });
      if (o.console) q.set('console', 'true');
      let r = await callApi<{ text: string; offset: number }>('GET', `${path(name)}/logs?${q}`);
      process.stdout.write(r.text);
      if (!o.follow || o.console) return;
      for (;;) {
        await sleep(500);
        r = await callApi<{ text: string; offset: number }>('GET', `${path(name)}/logs?offset=${r.offset}`);
        process.stdout.write(r.text);
      }
    });

  program
    .command('config')
    .description('an environment’s settings: template, cpus, memory, disk, ports, cmd, restart, env.NAME')
    .argument('<name>')
    .argument('<action>', 'ls | get KEY | set KEY=VALUE… | unset KEY…')
    .argument('[args...]')
    .action(async (name: string, action: string, args: string[]) => {
      if (action === 'ls' || action === 'get') {
        const env = await callApi<EnvironmentView>('GET', path(name));
        if (action === 'ls') {
          process.stdout.write(formatTable(['KEY', 'VALUE'], Object.entries(env.settings)));
          return;
        }
        const [key] = args;
        if (!key || args.length > 1) throw new Error('config get takes one KEY');
        if (!(key in env.settings) && !/^env\.[A-Za-z_]\w*$/.test(key))
          throw new Error(
            `unknown setting "${key}": the settings are ${Object.keys(env.settings)
              .filter((k) => !k.startsWith('env.'))
              .join(', ')}, env.NAME`,
          );
        console.log(env.settings[key] ?? '');
      } else if (action === 'set') {
        if (args.length === 0) throw new Error('config set takes KEY=VALUE pairs');
        const set: Record<string, string> = {};
        for (const p of args) {
          const i = p.indexOf('=');
          if (i < 1) throw new Error(`"${p}" is not KEY=VALUE`);
          set[p.slice(0, i)] = p.slice(i + 1);
        }
        await callApi('PATCH', `${path(name)}/config`, { set });
      } else if (action === 'unset') {
        if (args.length === 0) throw new Error('config unset takes KEYs');
        await callApi('PATCH', `${path(name)}/config`, { unset: args });
      } else throw new Error(`unknown config action "${action}": ls, get, set or unset`);
    });
}
