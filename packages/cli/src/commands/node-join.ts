import { hostname, totalmem } from 'node:os';
import { join } from 'node:path';
import { dataDir, HostScope, NodeAgent, NodeExecutor, NodeRefusedError, openLocalNode } from '@aiva/node';
import { type Command, InvalidArgumentError } from 'commander';
import { BuildProgress } from '../build-progress.js';
import { codeInterpreterDir, envdDir, mcpGatewayDir, recipesDir } from '../install-paths.js';
import { createLogger } from '../logger.js';
import { addressBlock, aivaVersion, int, LOG_LEVELS, label, logLevel } from '../option-parsers.js';

interface JoinOptions {
  token?: string;
  name: string;
  label: Record<string, string>;
  memoryBudget?: number;
  maxSandboxes?: number;
  tag?: string;
  addressBlock?: string;
  idSlotOffset?: number;
  logLevel: string;
  /** false with --no-prepare */
  prepare: boolean;
  directAddress?: HostPort;
  directListen?: HostPort;
}

interface HostPort {
  host: string;
  port: number;
}

/** `host:port` (an IPv6 host in brackets), for the direct-mode options. */
function hostPort(value: string): HostPort {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(value);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535) throw new InvalidArgumentError(`${value} is not host:port`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

/**
 * `aiva node join <server-url>`: runs this host's node as an agent of a control plane
 * (`aiva server`). The agent opens every connection, so a node behind NAT joins.
 */
export function registerNodeJoinCommand(node: Command): void {
  node
    .command('join <server-url>')
    .description(
      "run this host's node for a cluster's control plane (`aiva server`): it dials out, so NAT is fine",
    )
    .option(
      '--token <token>',
      'a join token (aiva node token create); needed once: the node keeps its credential',
    )
    .option('--name <name>', "the node's name in the cluster", hostname().toLowerCase())
    .option('--label <k=v>', 'a label placement can select on (repeatable)', label, {})
    .option(
      '--memory-budget <MiB>',
      'memory the sandboxes may be given in all (default: 90% of RAM)',
      int('memory-budget', 256, 1 << 30),
    )
    .option(
      '--max-sandboxes <n>',
      'sandboxes this host runs at most (default: by memory)',
      int('max-sandboxes', 1, 100_000),
    )
    .option(
      '--tag <tag>',
      'with other nodes on this host: 1-4 letters or digits that set this node’s namespaces, cgroups and state apart',
    )
    .option(
      '--address-block <cidr>',
      'the IPv4 block cut into one /30 per sandbox (default 10.11.0.0/16)',
      addressBlock,
    )
    .option(
      '--id-slot-offset <n>',
      'with other nodes on this host: where this node’s sandboxes’ host uid ranges start (slots of 65536 ids)',
      int('id-slot-offset', 0, 16383),
    )
    .option(
      '--no-prepare',
      'do not build the base template at start: its layers come from another node through the server when first needed',
    )
    .option(
      '--direct-address <host:port>',
      'where the server can reach this node directly: its sandbox traffic then goes there (TLS, pinned to a self-signed certificate) instead of through the node’s own connection',
      hostPort,
    )
    .option(
      '--direct-listen <addr:port>',
      'where the direct listener listens (default 0.0.0.0 and the port of --direct-address)',
      hostPort,
    )
    .option('--log-level <level>', `${LOG_LEVELS.join(', ')}`, logLevel, 'info')
    .action(async (serverUrl: string, opts: JoinOptions) => {
      let url: URL;
      try {
        url = new URL(serverUrl);
      } catch {
        throw new InvalidArgumentError(`${serverUrl} is not a URL (http://host:port)`);
      }
      if (!/^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$/.test(opts.name))
        throw new InvalidArgumentError(`node name ${opts.name}: lower-case letters, digits, . and -`);
      if (opts.directListen && !opts.directAddress)
        throw new InvalidArgumentError('--direct-listen needs --direct-address (where the server dials it)');
      const logger = createLogger({ level: opts.logLevel });
      const home = dataDir();
      const version = await aivaVersion();
      const local = await openLocalNode({
        home,
        recipesDir,
        envdDir,
        codeInterpreterDir,
        mcpGatewayDir,
        addressBlock: opts.addressBlock,
        scope: new HostScope({ tag: opts.tag, idSlotOffset: opts.idSlotOffset }),
        logger: logger.child({ component: 'node' }),
      });
      let agent: NodeAgent | undefined;
      try {
        const progress = new BuildProgress(process.stderr);
        if (opts.prepare) {
          process.stderr.write(`Preparing the base template in ${local.images.paths.root}\n`);
          await local.images.ensureTemplate('base', { reporter: progress });
        }
        if (local.sandboxes.defaultDriver !== 'container')
          await local.images.ensureKernel({ reporter: progress });
        progress.close();
        const memoryBudgetMiB = opts.memoryBudget ?? Math.floor((totalmem() / 1024 / 1024) * 0.9);
        const executor = new NodeExecutor(local, {
          buildFiles: (team, hashes) => (agent as NodeAgent).buildFiles(team, hashes),
          artefacts: {
            push: (p, signal) => (agent as NodeAgent).artefacts.push(p, signal),
            fetch: (p, signal) => (agent as NodeAgent).artefacts.fetch(p, signal),
          },
          deadlinesFile: join(home, 'agent', 'deadlines.json'),
          log: logger.child({ component: 'node-executor' }),
        });
        agent = new NodeAgent({
          serverUrl: url.origin,
          home,
          name: opts.name,
          labels: opts.label,
          token: opts.token ?? process.env.AIVA_JOIN_TOKEN,
          aivaVersion: version,
          memoryBudgetMiB,
          maxSandboxes: opts.maxSandboxes ?? Math.max(1, Math.floor(memoryBudgetMiB / 128)),
          executor,
          ...(opts.directAddress
            ? {
                direct: {
                  address: `${opts.directAddress.host.includes(':') ? `[${opts.directAddress.host}]` : opts.directAddress.host}:${opts.directAddress.port}`,
                  listenHost: opts.directListen?.host ?? '0.0.0.0',
                  listenPort: opts.directListen?.port ?? opts.directAddress.port,
                },
              }
            : {}),
          logger: logger.child({ component: 'agent' }),
        });
        const running = agent.run();
        let stopping = false;
        const stop = (signal: string) => {
          // A second signal, or a stop that takes too long, ends the process at once.
          if (stopping) process.exit(130);
          stopping = true;
          logger.info({ signal }, 'stopping: sandboxes keep running and are adopted on the next start');
          agent?.stop();
          setTimeout(() => {
            logger.error('stopping took over 30 s: exiting');
            process.exit(1);
          }, 30_000).unref();
        };
        process.on('SIGTERM', () => stop('SIGTERM'));
        process.on('SIGINT', () => stop('SIGINT'));
        process.stderr.write(`aiva ${version} node ${opts.name} joining ${url.origin}\n`);
        await running;
      } catch (e) {
        if (e instanceof NodeRefusedError) process.exitCode = 3;
        throw e;
      } finally {
        await local.sandboxes.close();
      }
      // Stopped on a signal: done, whatever timers the node's parts still hold.
      process.exit(0);
    });
}
