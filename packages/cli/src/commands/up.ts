import { readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_VOLUME_SIZE_MIB,
  DRIVER_NAMES,
  type DriverName,
  dataDir,
  MAX_VOLUME_SIZE_MIB,
  MIN_VOLUME_SIZE_MIB,
  NodeExecutor,
  NodeSnapshotter,
  openLocalNode,
} from '@aiva/node';
import { InProcessNodeLink, parseListen, startDomainDns, startServer, uploadedFile } from '@aiva/server';
import { type Command, InvalidArgumentError } from 'commander';
import { BuildProgress } from '../build-progress.js';
import { defaultDnsAnswer, domainBanner, tlsFor } from '../domain-setup.js';
import { codeInterpreterDir, envdDir, mcpGatewayDir, recipesDir } from '../install-paths.js';
import { createLogger } from '../logger.js';
import { type MeteringOptions, meteringConfig, meteringOptions } from '../metering-options.js';
import { addressBlock, aivaVersion, int, LOG_LEVELS, logLevel, onStopSignal } from '../option-parsers.js';

/** What `aiva up` writes for clients (and `aiva keys`) to find the server: root-readable only. */
export interface Credentials {
  apiUrl: string;
  apiKey: string;
}

export const credentialsFile = () => join(dataDir(), 'credentials.json');

export async function readCredentials(): Promise<Credentials | undefined> {
  return readFile(credentialsFile(), 'utf8').then(
    (t) => JSON.parse(t) as Credentials,
    () => undefined,
  );
}

interface UpOptions extends MeteringOptions {
  host: string;
  port: number;
  domain?: string;
  databaseUrl?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** false with --no-tls. */
  tls: boolean;
  dnsListen?: { host: string; port: number };
  dnsAnswer?: string;
  runtime?: DriverName;
  maxSandboxes?: number;
  memoryBudget?: number;
  teamMaxSandboxes: number;
  volumeQuota?: number;
  volumeSize?: number;
  dns?: string[];
  networkPool: number;
  addressBlock?: string;
  warmPool: Record<string, number>;
  logLevel: string;
}

export function registerUpCommand(program: Command): void {
  meteringOptions(program.command('up'))
    .description('run aiva: the E2B-compatible API, the sandbox proxy and this host’s node, on one port')
    .option('--host <address>', 'address to listen on (0.0.0.0 to serve other machines)', '127.0.0.1')
    .option('-p, --port <n>', 'port for the API and sandbox traffic', int('port', 0, 65535), 3000)
    .option('--domain <domain>', 'route sandbox traffic by host name too: {port}-{sandboxId}.<domain>')
    .option('--database-url <url>', 'a PostgreSQL server (postgres://…) instead of the embedded database')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'the key of --tls-cert (PEM)')
    .option(
      '--no-tls',
      'with --domain and no --tls-cert: serve plain HTTP rather than the certificate of `aiva tls init` (E2B_DOMAIN clients need HTTPS)',
    )
    .option(
      '--dns-listen <address:port>',
      'with --domain: answer DNS (UDP) for <domain> and *.<domain> here, with aiva’s address; refuse every other name',
      (v: string) => {
        try {
          return parseListen(v);
        } catch (e) {
          throw new InvalidArgumentError((e as Error).message);
        }
      },
    )
    .option(
      '--dns-answer <address>',
      'the address --dns-listen gives (default: --host, or 127.0.0.1 when that is 0.0.0.0 or loopback)',
      (v: string) => {
        if (!isIP(v)) throw new InvalidArgumentError('an IPv4 or IPv6 address');
        return v;
      },
    )
    .option(
      '-r, --runtime <name>',
      `default runtime: ${DRIVER_NAMES.join(', ')} (default: the best this host has)`,
      (v) => {
        if (!(DRIVER_NAMES as readonly string[]).includes(v))
          throw new InvalidArgumentError(`one of ${DRIVER_NAMES.join(', ')}`);
        return v as DriverName;
      },
    )
    .option(
      '--max-sandboxes <n>',
      'sandboxes this host runs at most (default: by memory)',
      int('max-sandboxes', 1, 100_000),
    )
    .option(
      '--memory-budget <MiB>',
      'memory the sandboxes may be given in all, counted by their limits (default: 90% of RAM; more overcommits)',
      int('memory-budget', 256, 1 << 30),
    )
    .option(
      '--team-max-sandboxes <n>',
      'sandboxes one team may run at once',
      int('team-max-sandboxes', 1, 100_000),
      100,
    )
    .option(
      '--volume-quota <MiB>',
      'what one team’s volumes’ sizes may add up to, in MiB (env AIVA_VOLUME_QUOTA_MIB; default 10240): a create past it is refused (429)',
      int('volume-quota', 1, 1 << 30),
    )
    .option(
      '--volume-size <MiB>',
      'size of a new volume unless its create says otherwise, in MiB (env AIVA_VOLUME_SIZE_MIB; default 1024): an ext4 image that bounds what is written into it; the quota counts these sizes',
      int('volume-size', MIN_VOLUME_SIZE_MIB, MAX_VOLUME_SIZE_MIB),
    )
    .option(
      '--dns <address...>',
      'resolvers the sandboxes’ DNS forwarder asks (a.b.c.d[:port]; default: the host’s /etc/resolv.conf)',
    )
    .option(
      '--network-pool <n>',
      'network namespaces kept ready ahead of creates',
      int('network-pool', 0, 1000),
      0,
    )
    .option(
      '--address-block <cidr>',
      'the IPv4 block cut into one /30 per sandbox (/8 to /28; default 10.11.0.0/16; must not clash with the host’s routes)',
      addressBlock,
    )
    .option(
      '--warm-pool <template=n>',
      'keep n sandboxes of a template (base, or a built one by name[:tag] or id) ready ahead of creates (repeatable; containers: each idle one takes ~25 MiB)',
      (v: string, all: Record<string, number>) => {
        const m = /^([a-z0-9][a-z0-9_.-]*(?::[a-z0-9][a-z0-9_.-]*)?)=(\d{1,4})$/.exec(v);
        if (!m) throw new InvalidArgumentError('template=n, e.g. base=4 or my-app:v2=2');
        return { ...all, [m[1] as string]: Number(m[2]) };
      },
      {},
    )
    .option(
      '--log-level <level>',
      `${LOG_LEVELS.join(', ')} (JSON lines, readable ones on a terminal)`,
      logLevel,
      'info',
    )
    .action(async (opts: UpOptions) => {
      const metering = meteringConfig(opts);
      if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey))
        throw new Error('--tls-cert and --tls-key go together');
      if ((opts.dnsListen || !opts.tls) && !opts.domain)
        throw new Error(`${opts.dnsListen ? '--dns-listen' : '--no-tls'} goes with --domain`);
      if (opts.dnsAnswer && !opts.dnsListen) throw new Error('--dns-answer goes with --dns-listen');
      const logger = createLogger({ level: opts.logLevel });
      const home = dataDir();
      const domain = opts.domain?.toLowerCase().replace(/\.$/, '');
      const { tls, caCert } = await tlsFor(opts, domain, home, logger);
      const dnsAnswer = opts.dnsListen && (opts.dnsAnswer ?? defaultDnsAnswer(opts.host));
      const version = await aivaVersion();
      const volumeSizeMiB = mibOption(opts.volumeSize, 'AIVA_VOLUME_SIZE_MIB', DEFAULT_VOLUME_SIZE_MIB);
      if (volumeSizeMiB < MIN_VOLUME_SIZE_MIB || volumeSizeMiB > MAX_VOLUME_SIZE_MIB)
        throw new Error(
          `a volume's size is from ${MIN_VOLUME_SIZE_MIB} to ${MAX_VOLUME_SIZE_MIB} MiB, not ${volumeSizeMiB}`,
        );

      // Before the node: a DNS port taken fails the start before anything else is done.
      const dns =
        opts.dnsListen && domain && dnsAnswer
          ? await startDomainDns({
              ...opts.dnsListen,
              domain,
              answer: dnsAnswer,
              logger: logger.child({ component: 'dns' }),
            })
          : undefined;
      const node = await openLocalNode({
        home,
        recipesDir,
        envdDir,
        codeInterpreterDir,
        mcpGatewayDir,
        defaultDriver: opts.runtime,
        dnsUpstreams: opts.dns,
        networkPoolSize: opts.networkPool,
        addressBlock: opts.addressBlock,
        volumeSizeMiB,
        logger: logger.child({ component: 'node' }),
      }).catch(async (e: unknown) => {
        await dns?.close();
        throw e;
      });
      const shutdownNode = async () => {
        await dns?.close();
        // What the server shelved on its way out (named environments) is kept for the next start.
        await node.sandboxes.killAll({ keepShelved: true });
        await node.sandboxes.close();
      };
      let server: Awaited<ReturnType<typeof startServer>>;
      try {
        // Build what the first sandbox needs now, with progress, rather than in its request.
        const progress = new BuildProgress(process.stderr);
        process.stderr.write(`Preparing the base template in ${node.images.paths.root}\n`);
        await node.images.ensureTemplate('base', { reporter: progress });
        const known = await node.images.templateNames();
        // Built templates are the server's to resolve: one built later fills once it is ready.
        for (const t of Object.keys(opts.warmPool))
          if (known.includes(t)) await node.images.ensureTemplate(t, { reporter: progress });
        if (node.sandboxes.defaultDriver !== 'container')
          await node.images.ensureKernel({ reporter: progress });
        progress.close();

        const memoryBudgetMiB = opts.memoryBudget ?? Math.floor((totalmem() / 1024 / 1024) * 0.9);
        const maxSandboxes = opts.maxSandboxes ?? Math.max(1, Math.floor(memoryBudgetMiB / 128));
        // This host's node, reached through the same contract as a node on another host.
        const executor = new NodeExecutor(node, {
          buildFiles: async (team) => (hash) => uploadedFile(home, team, hash),
        });
        const snapshots = new NodeSnapshotter(executor, {
          nodeId: 'local',
          aivaVersion: version,
          memoryBudgetMiB,
          maxSandboxes,
        });
        server = await startServer(
          {
            home,
            host: opts.host,
            port: opts.port,
            domain,
            databaseUrl: opts.databaseUrl,
            tls,
            warmPool: opts.warmPool,
            limits: {
              maxSandboxes,
              memoryBudgetMiB,
              maxSandboxesPerTeam: opts.teamMaxSandboxes,
            },
            version,
            metering,
            volumes: {
              quotaBytes: mibOption(opts.volumeQuota, 'AIVA_VOLUME_QUOTA_MIB', 10 * 1024) * 1024 * 1024,
              defaultSizeMiB: volumeSizeMiB,
            },
            volumeDisks: node.sandboxes.volumes,
          },
          new InProcessNodeLink('local', executor, snapshots),
          logger,
        );
      } catch (e) {
        await shutdownNode();
        throw e;
      }

      const credentials = await readCredentials();
      if (server.firstApiKey) {
        await writeFile(
          credentialsFile(),
          `${JSON.stringify({ apiUrl: server.url, apiKey: server.firstApiKey }, null, 2)}\n`,
          {
            mode: 0o600,
          },
        );
      } else if (credentials && credentials.apiUrl !== server.url) {
        await writeFile(
          credentialsFile(),
          `${JSON.stringify({ ...credentials, apiUrl: server.url }, null, 2)}\n`,
          { mode: 0o600 },
        );
      }
      const key = server.firstApiKey ?? credentials?.apiKey ?? '<your API key>';
      const lines = [
        `aiva ${version} is up at ${server.url} (runtime: ${node.sandboxes.defaultDriver})`,
        ...(server.firstApiKey
          ? [
              `First start: created team "default" and its API key, shown this once and kept in ${credentialsFile()}:`,
              `  ${server.firstApiKey}`,
            ]
          : []),
        'Point the e2b SDK at it:',
        `  export E2B_API_URL=${server.url} E2B_SANDBOX_URL=${server.url} E2B_API_KEY=${key}${caCert ? ` NODE_EXTRA_CA_CERTS=${caCert}` : ''}`,
        ...(domain
          ? domainBanner({
              domain,
              apiKey: key,
              url: server.url,
              caCert,
              dns: dns && { ...dns, answer: dnsAnswer ?? '' },
            })
          : []),
      ];
      process.stderr.write(`${lines.join('\n')}\n`);

      onStopSignal(logger, 'stopping: ending sandboxes and closing', async () => {
        await server.close({ killSandboxes: true });
        await shutdownNode();
      });
    });
}

/** A MiB option: its flag, else the environment variable `env`, else `fallback`. */
function mibOption(flag: number | undefined, env: string, fallback: number): number {
  if (flag !== undefined) return flag;
  const value = process.env[env];
  if (!value) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${env} must be a whole number of MiB, got ${value}`);
  return n;
}
