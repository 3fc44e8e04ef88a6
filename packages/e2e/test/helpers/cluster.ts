import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  dataDir,
  type HostResources,
  HostScope,
  hostResources,
  leftoverHostResources,
  runCommand,
} from '@aiva/node';

// A cluster on one host, as issue 17's tests build it: `aiva server` in the host's
// network namespace, listening on an address of its own (on a veth pair the test makes),
// and node agents (`aiva node join`), each in a network namespace of its own with its own
// data directory, host scope (tag, address block, id slots) and a /30 link to the host.
// The image store is the shared one (templates are cached between runs), or (`ownStore`)
// an empty one of the node's own, filled from the others through the server.

const cli = fileURLToPath(import.meta.resolve('@aiva/cli/aiva'));

/** The server's address: on `clt-srv`, a veth the test makes (no traffic leaves the host). */
export const SERVER_ADDRESS = '10.199.0.1';

export interface Proc {
  child: ChildProcess;
  output(): string;
  /** Resolves once the output matches `pattern` (rejects if the process exits first). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

function run(command: string, args: string[], env: NodeJS.ProcessEnv): Proc {
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  for (const s of [child.stdout, child.stderr])
    s?.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      for (const l of listeners) l();
    });
  return {
    child,
    output: () => out,
    waitFor(pattern, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const done = (e?: Error, m?: RegExpMatchArray) => {
          listeners.delete(check);
          child.off('exit', exited);
          clearTimeout(timer);
          if (e) reject(e);
          else resolve(m as RegExpMatchArray);
        };
        const check = () => {
          const m = pattern.exec(out);
          if (m) done(undefined, m);
        };
        const exited = () => done(new Error(`${command} exited before ${pattern}:\n${out}`));
        const timer = setTimeout(
          () => done(new Error(`no ${pattern} in ${timeoutMs} ms:\n${out}`)),
          timeoutMs,
        );
        listeners.add(check);
        child.once('exit', exited);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      // One that does not stop within a minute is killed (and the test sees its exit code).
      const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
      const [code] = await once(child, 'exit');
      clearTimeout(timer);
      return code as number | null;
    },
  };
}

export interface ClusterServer extends Proc {
  url: string;
  apiKey: string;
  home: string;
}

/** The server's own address on a veth pair of the test's (both ends in the host's namespace). */
export async function addServerAddress(): Promise<void> {
  await runCommand('ip', ['link', 'add', 'clt-srv', 'type', 'veth', 'peer', 'name', 'clt-srvp']);
  await runCommand('ip', ['addr', 'add', `${SERVER_ADDRESS}/32`, 'dev', 'clt-srv']);
  await runCommand('ip', ['link', 'set', 'clt-srv', 'up']);
  await runCommand('ip', ['link', 'set', 'clt-srvp', 'up']);
}

export async function removeServerAddress(): Promise<void> {
  await runCommand('ip', ['link', 'del', 'clt-srv']).catch(() => {});
}

/** `aiva server` on SERVER_ADDRESS with the PostgreSQL at `databaseUrl`. */
export async function startClusterServer(
  databaseUrl: string,
  args: string[] = [],
  home?: string,
): Promise<ClusterServer> {
  const dir = home ?? (await mkdtemp(join(tmpdir(), 'aiva-server-')));
  const p = run(
    process.execPath,
    [
      cli,
      'server',
      '--host',
      SERVER_ADDRESS,
      '--port',
      '0',
      '--database-url',
      databaseUrl,
      '--log-level',
      'info',
      ...args,
    ],
    { AIVA_HOME: dir },
  );
  const [, url = ''] = await p.waitFor(/control plane is up at (\S+)/);
  const key = /^\s+(e2b_[0-9a-f]+)$/m.exec(p.output())?.[1] ?? '';
  return { ...p, url, apiKey: key, home: dir };
}

export interface ClusterNode {
  index: number;
  name: string;
  netns: string;
  home: string;
  scope: HostScope;
  addressBlock: string;
  slots: number;
  baseline: HostResources;
  agent?: Proc;
}

/**
 * Node i's namespace (`clt-n<i>`, 10.200.<i>.2/30 to the host's 10.200.<i>.1) and data
 * directory; its agent is started by `startAgent`.
 */
export async function makeNode(index: number, options: { ownStore?: boolean } = {}): Promise<ClusterNode> {
  const netns = `clt-n${index}`;
  const host = `clt-h${index}`;
  await runCommand('ip', ['netns', 'add', netns]);
  await runCommand('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
  await runCommand('ip', ['addr', 'add', `10.200.${index}.1/30`, 'dev', host]);
  await runCommand('ip', ['link', 'set', host, 'up']);
  await runCommand('ip', ['-n', netns, 'addr', 'add', `10.200.${index}.2/30`, 'dev', 'eth0']);
  await runCommand('ip', ['-n', netns, 'link', 'set', 'eth0', 'up']);
  await runCommand('ip', ['-n', netns, 'link', 'set', 'lo', 'up']);
  await runCommand('ip', ['-n', netns, 'route', 'add', 'default', 'via', `10.200.${index}.1`]);
  const home = await mkdtemp(join(tmpdir(), `aiva-node${index}-`));
  // The shared store (templates cached between runs), or an empty one of its own.
  if (options.ownStore) await mkdir(join(home, 'images'));
  else {
    await mkdir(join(dataDir(), 'images'), { recursive: true });
    await symlink(join(dataDir(), 'images'), join(home, 'images'));
  }
  // Blocks and id slots of their own: 256 sandboxes each, far from `aiva up`'s defaults.
  const addressBlock = `10.${40 + index}.0.0/22`;
  const scope = new HostScope({ tag: `c${index}`, idSlotOffset: 10_000 + index * 256 });
  const filter = { scope, home, netns, addressSlots: 256 };
  return {
    index,
    name: `node-${index}`,
    netns,
    home,
    scope,
    addressBlock,
    slots: 256,
    baseline: await hostResources(filter),
  };
}

/** Runs (or runs again) node `n`'s agent: `aiva node join` inside its namespace. */
export async function startAgent(
  n: ClusterNode,
  serverUrl: string,
  options: { token?: string; labels?: Record<string, string>; wait?: boolean; args?: string[] } = {},
): Promise<Proc> {
  const args = [
    `--net=/run/netns/${n.netns}`,
    '--',
    process.execPath,
    cli,
    'node',
    'join',
    serverUrl,
    '--name',
    n.name,
    '--tag',
    n.scope.tag,
    '--address-block',
    n.addressBlock,
    '--id-slot-offset',
    String(n.scope.idSlotOffset),
    '--log-level',
    'info',
    ...(options.token ? ['--token', options.token] : []),
    ...Object.entries(options.labels ?? {}).flatMap(([k, v]) => ['--label', `${k}=${v}`]),
    ...(options.args ?? []),
  ];
  const agent = run('nsenter', args, { AIVA_HOME: n.home });
  n.agent = agent;
  if (options.wait !== false) await agent.waitFor(/"msg":"tunnel open"/);
  return agent;
}

/** What node `n` left on the host beyond what was there before it (its scope only). */
export function nodeLeftovers(n: ClusterNode): Promise<Partial<HostResources>> {
  return leftoverHostResources(n.baseline, {
    scope: n.scope,
    home: n.home,
    netns: n.netns,
    addressSlots: n.slots,
  });
}

/**
 * Kills whatever sandboxes node `n` still holds after its agent stopped (a failed test's);
 * returns their ids.
 */
export async function killLeftSandboxes(n: ClusterNode): Promise<string[]> {
  const script = fileURLToPath(new URL('./node-cleanup.js', import.meta.url));
  const { stdout } = await runCommand('nsenter', [
    `--net=/run/netns/${n.netns}`,
    '--',
    process.execPath,
    script,
    n.home,
    n.scope.tag,
    n.addressBlock,
    String(n.scope.idSlotOffset),
  ]);
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '[]') as string[];
}

/** Removes node `n`'s namespace, link and data directory (its agent has stopped). */
export async function removeNode(n: ClusterNode): Promise<void> {
  await runCommand('ip', ['link', 'del', `clt-h${n.index}`]).catch(() => {});
  await runCommand('ip', ['netns', 'del', n.netns]).catch(() => {});
  // The link to the shared store goes first, so that nothing could follow it.
  if (
    await lstat(join(n.home, 'images')).then(
      (s) => s.isSymbolicLink(),
      () => false,
    )
  )
    await rm(join(n.home, 'images'), { force: true });
  await rm(n.home, { recursive: true, force: true });
}

/** The node's kept credential (what `aiva node join` got at join). */
export async function nodeCredentials(n: ClusterNode): Promise<{ nodeId: string; credential: string }> {
  return JSON.parse(await readFile(join(n.home, 'agent', 'credentials.json'), 'utf8'));
}

/**
 * Polls `fn` every 250 ms until it gives a value (neither undefined nor false); after
 * `timeoutMs` it throws, naming `what` and the last error `fn` threw.
 */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  timeoutMs = 60_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const v = await fn().catch((e) => {
      last = e;
      return undefined;
    });
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? ` (${last})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Removes the nodes (their agents have stopped). What a node left on the host is noted
 * and killed first, so that it is not left for the next tests; returns what each left,
 * by node name (empty when nothing was).
 */
export async function removeNodesNotingLeftovers(nodes: ClusterNode[]): Promise<Record<string, unknown>> {
  const left: Record<string, unknown> = {};
  for (const n of nodes) {
    const l = await nodeLeftovers(n);
    if (Object.keys(l).length > 0) {
      left[n.name] = l;
      await killLeftSandboxes(n).catch(() => {});
    }
    await removeNode(n);
  }
  return left;
}
