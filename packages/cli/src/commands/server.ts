import { writeFile } from 'node:fs/promises';
import { dataDir } from '@aiva/node';
import { startServer } from '@aiva/server';
import type { Command } from 'commander';
import { createLogger } from '../logger.js';
import { type MeteringOptions, meteringConfig, meteringOptions } from '../metering-options.js';
import { aivaVersion, int, LOG_LEVELS, logLevel, onStopSignal } from '../option-parsers.js';
import { credentialsFile } from './up.js';

interface ServerOptions extends MeteringOptions {
  host: string;
  port: number;
  domain?: string;
  databaseUrl?: string;
  teamMaxSandboxes: number;
  unreachableAfter: number;
  lostAfter: number;
  advertiseUrl?: string;
  direct: boolean;
  logLevel: string;
}

/** `aiva server`: the control plane without a node of its own; nodes join it (`aiva node join`). */
export function registerServerCommand(program: Command): void {
  meteringOptions(program.command('server'))
    .description(
      'run the control plane of a cluster: the E2B-compatible API and the sandbox proxy, with no node of its own; hosts join it with `aiva node join`',
    )
    .option('--host <address>', 'address to listen on (0.0.0.0 to serve other machines)', '127.0.0.1')
    .option(
      '-p, --port <n>',
      'port for the API, sandbox traffic and node agents',
      int('port', 0, 65535),
      3000,
    )
    .option('--domain <domain>', 'route sandbox traffic by host name too: {port}-{sandboxId}.<domain>')
    .option(
      '--database-url <url>',
      'the PostgreSQL server (postgres://…) the control plane keeps its state in; every replica uses the same one (env AIVA_DATABASE_URL)',
    )
    .option(
      '--team-max-sandboxes <n>',
      'sandboxes one team may run at once',
      int('team-max-sandboxes', 1, 100_000),
      100,
    )
    .option(
      '--unreachable-after <s>',
      'a node silent this many seconds is unreachable: creates avoid it',
      int('unreachable-after', 2, 3600),
      30,
    )
    .option(
      '--lost-after <s>',
      'a node silent this many seconds is lost: its sandboxes end (if it comes back, what it still runs is killed)',
      int('lost-after', 2, 7 * 86_400),
      300,
    )
    .option(
      '--advertise-url <url>',
      'where the other replicas on the same database reach this one, e.g. http://10.0.0.5:3000 (env AIVA_ADVERTISE_URL; default: this host’s name and port)',
    )
    .option(
      '--no-direct',
      'never dial nodes’ direct listeners (aiva node join --direct-address): all sandbox traffic rides the nodes’ own connections',
    )
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')}`, logLevel, 'info')
    .action(async (opts: ServerOptions) => {
      const metering = meteringConfig(opts);
      if (opts.lostAfter <= opts.unreachableAfter)
        throw new Error('--lost-after must be longer than --unreachable-after');
      const databaseUrl = opts.databaseUrl ?? process.env.AIVA_DATABASE_URL;
      if (!databaseUrl?.startsWith('postgres'))
        throw new Error(
          'a cluster keeps its state in PostgreSQL: give --database-url postgres://… (the embedded database is for `aiva up`, one box)',
        );
      const advertiseUrl = opts.advertiseUrl ?? process.env.AIVA_ADVERTISE_URL;
      if (advertiseUrl && !/^https?:\/\/[^/\s]+\/?$/.test(advertiseUrl))
        throw new Error(`--advertise-url ${advertiseUrl} is not http(s)://host:port`);
      const logger = createLogger({ level: opts.logLevel });
      const version = await aivaVersion();
      const server = await startServer(
        {
          home: dataDir(),
          host: opts.host,
          port: opts.port,
          domain: opts.domain?.toLowerCase().replace(/\.$/, ''),
          databaseUrl,
          // Each node's capacity is its own (placement); the team limit holds across them.
          limits: {
            maxSandboxes: Number.MAX_SAFE_INTEGER,
            memoryBudgetMiB: Number.MAX_SAFE_INTEGER,
            maxSandboxesPerTeam: opts.teamMaxSandboxes,
          },
          version,
          metering,
          cluster: {
            unreachableAfterSeconds: opts.unreachableAfter,
            lostAfterSeconds: opts.lostAfter,
            advertiseUrl: advertiseUrl?.replace(/\/$/, ''),
            secret: process.env.AIVA_CLUSTER_SECRET || undefined,
            direct: opts.direct,
          },
        },
        undefined,
        logger,
      );
      if (server.firstApiKey)
        await writeFile(
          credentialsFile(),
          `${JSON.stringify({ apiUrl: server.url, apiKey: server.firstApiKey }, null, 2)}\n`,
          { mode: 0o600 },
        );
      const lines = [
        `aiva ${version} control plane is up at ${server.url}`,
        ...(server.firstApiKey
          ? [
              `First start: created team "default" and its API key, shown this once and kept in ${credentialsFile()}:`,
              `  ${server.firstApiKey}`,
            ]
          : []),
        'Add a host: make a join token (aiva node token create, with an operator key) and run there',
        `  aiva node join ${server.url} --token <token>`,
      ];
      process.stderr.write(`${lines.join('\n')}\n`);
      onStopSignal(logger, 'stopping: the nodes keep their sandboxes', () =>
        server.close({ killSandboxes: false }),
      );
    });
}
