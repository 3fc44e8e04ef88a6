// `aiva up` for the benchmarks that drive it as a user would: the real CLI in a child
// process on a data directory of the benchmark's (sharing the image store).
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, mkdtemp, readFile, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkHost, type DriverName, dataDir } from '@aiva/node';

const cli = fileURLToPath(new URL('../../../packages/cli/dist/src/main.js', import.meta.url));

export interface Server {
  url: string;
  apiKey: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** `aiva up` on a free port; `home` shares the image store. */
export async function aivaUp(home: string, args: string[]): Promise<Server> {
  const child = spawn(process.execPath, [cli, 'up', '--port', '0', '--log-level', 'warn', ...args], {
    env: { ...process.env, AIVA_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const started = await new Promise<boolean>((resolve) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/ is up at /.test(out)) resolve(true);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', () => resolve(false));
  });
  if (!started) throw new Error(`aiva up did not start:\n${out}`);
  const url = / is up at (\S+)/.exec(out)?.[1] ?? '';
  const { apiKey } = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as { apiKey: string };
  return {
    url,
    apiKey,
    child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  };
}

/**
 * `aiva up` with `args` on a new data directory `home` that shares this host's image
 * store, and the e2b SDKs (through their environment variables) pointed at it.
 */
export async function aivaUpForSdk(home: string, args: string[]): Promise<Server> {
  await mkdir(home, { recursive: true });
  await symlink(join(dataDir(), 'images'), join(home, 'images'));
  const server = await aivaUp(home, args);
  process.env.E2B_API_URL = server.url;
  process.env.E2B_SANDBOX_URL = server.url;
  process.env.E2B_API_KEY = server.apiKey;
  return server;
}

/** A new directory for the data directories of a benchmark's servers (remove it after). */
export async function benchScratch(name: string): Promise<string> {
  const scratch = await mkdtemp(join(tmpdir(), `aiva-bench-${name}-`));
  // Data directories go under it: sandboxes in user namespaces must be able to search it.
  await chmod(scratch, 0o711);
  return scratch;
}

/** The drivers this host can run, less those AIVA_BENCH_DRIVERS (a comma list) leaves out. */
export async function benchDrivers(): Promise<DriverName[]> {
  const host = await checkHost();
  const only = process.env.AIVA_BENCH_DRIVERS?.split(',');
  return (['container', 'qemu-microvm'] as DriverName[]).filter(
    (d) => host.checks.some((c) => c.driver === d && c.available) && (!only || only.includes(d)),
  );
}
