import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dataDir, VolumeDisks } from '@aiva/node';
import { checkHostLeaks } from './host-leaks.js';

/** The built `aiva` (packages/cli): these tests run it as a user would. */
const cli = fileURLToPath(import.meta.resolve('@aiva/cli/aiva'));

export interface AivaUp {
  url: string;
  apiKey: string;
  home: string;
  process: ChildProcess;
  /** Everything the server printed (stdout and stderr). */
  output(): string;
  /** SIGTERM, and waits for it to exit; resolves to its exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, as a crash would. */
  crash(): Promise<void>;
}

/** A fresh data directory whose image store is the shared one (templates are cached between runs). */
export async function makeHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'aiva-up-'));
  await mkdir(join(dataDir(), 'images'), { recursive: true });
  await symlink(join(dataDir(), 'images'), join(home, 'images'));
  return home;
}

/** Runs another `aiva` command (not `up`) with the data directory `home`; rejects if it fails. */
export async function runAiva(
  home: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<{ stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, [cli, ...args], {
    env: { ...process.env, AIVA_HOME: home },
    timeout: timeoutMs,
    maxBuffer: 64 * 1024 * 1024,
  });
}

/**
 * Runs the real `aiva up` (the CLI, as a user would) on a free port with a fresh data
 * directory whose image store is the shared one (templates are cached between runs).
 * If another aiva node holds this host, waits for it to finish.
 */
export async function aivaUp(
  args: string[] = [],
  options: { home?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<AivaUp> {
  const home = options.home ?? (await makeHome());
  const deadline = Date.now() + 15 * 60_000;
  for (;;) {
    const child = spawn(process.execPath, [cli, 'up', '--port', '0', '--log-level', 'warn', ...args], {
      env: { ...process.env, AIVA_HOME: home, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    const started = await new Promise<boolean>((resolve) => {
      const check = () => {
        if (/ is up at /.test(out)) resolve(true);
      };
      child.stdout.on('data', check);
      child.stderr.on('data', check);
      child.once('exit', () => resolve(false));
    });
    if (!started) {
      if (/another aiva node runs on this host/.test(out) && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2000));
        continue;
      }
      throw new Error(`aiva up did not start:\n${out}`);
    }
    const url = / is up at (\S+)/.exec(out)?.[1] ?? '';
    const credentials = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
      apiKey: string;
    };
    const dir = home;
    return {
      url,
      apiKey: credentials.apiKey,
      home: dir,
      process: child,
      output: () => out,
      async stop() {
        if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
        child.kill('SIGTERM');
        const [code] = await once(child, 'exit');
        return code as number | null;
      },
      async crash() {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGKILL');
        await once(child, 'exit');
      },
    };
  }
}

/**
 * Removes a data directory made by `aivaUp` (the shared image store is only linked), and
 * first unmounts the volumes a crashed `aiva up` left mounted there (a clean stop did).
 */
export async function removeHome(home: string): Promise<void> {
  await new VolumeDisks(home).release(new Set());
  await rm(join(home, 'images'), { force: true });
  await rm(home, { recursive: true, force: true });
}

/** Points the e2b SDK at a server by environment variables only, as users do. */
export function useServer(up: AivaUp): void {
  process.env.E2B_API_URL = up.url;
  process.env.E2B_SANDBOX_URL = up.url;
  process.env.E2B_API_KEY = up.apiKey;
  // The volume content API: without it the SDK would call https://api.<E2B_DOMAIN>.
  process.env.E2B_VOLUME_API_URL = up.url;
  delete process.env.E2B_DOMAIN;
  delete process.env.E2B_DEBUG;
}

/**
 * For a test file driven by the SDK: `aiva up` (with `args`) starts before its tests and
 * the SDK is pointed at it; after them it stops (exit code 0), its data directory goes,
 * and the host is checked for leftovers — in that order. Read `.up` inside tests.
 */
export function aivaUpForFile(args: string[] = []): { readonly up: AivaUp } {
  let up: AivaUp | undefined;
  before(async () => {
    up = await aivaUp(args);
    useServer(up);
  });
  after(async () => {
    if (!up) return;
    const code = await up.stop();
    await removeHome(up.home);
    assert.equal(code, 0, up.output());
  });
  // Registered after the server's own `after`: hooks run in the order they were added.
  checkHostLeaks();
  return {
    get up() {
      if (!up) throw new Error('aiva up has not started (use .up inside tests)');
      return up;
    },
  };
}

/**
 * Before a file's tests: the recipe template `name` built into the shared image store
 * (minutes the first time, then cached; a build already under way elsewhere is waited for).
 */
export function templateBuiltForFile(name: string): void {
  before(async () => {
    const home = await makeHome();
    try {
      await runAiva(home, ['image', 'build', name, '--no-kernel'], 30 * 60_000);
    } finally {
      await removeHome(home);
    }
  });
}
