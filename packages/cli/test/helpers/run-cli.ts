import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataDir } from '@aiva/node';

/** The built `aiva` command, as `npm run aiva` and users run it. */
export const cliPath = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface CliResult {
  /** The exit code, or null if a signal ended it. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunCliOptions {
  /** Added to this process's environment (AIVA_HOME above all). */
  env?: NodeJS.ProcessEnv;
  /** Kill it (SIGKILL) after this long; the test then fails on its result. */
  timeoutMs?: number;
  /**
   * How long to keep trying while another aiva node holds this host (another test run,
   * `aiva up`), which the sandbox commands refuse: they fail at once, before doing anything.
   */
  nodeWaitMs?: number;
  /** Sees the output as it comes. */
  onStdout?: (chunk: string) => void;
  /** Sends it `signal` once its stderr matches `stderr` (a user's Ctrl-C). */
  interrupt?: { stderr: RegExp; signal: NodeJS.Signals };
}

const NODE_BUSY = /^aiva: another aiva node runs on this host/m;

function runOnce(args: readonly string[], options: RunCliOptions): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      env: { ...process.env, ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      options.onStdout?.(d);
    });
    let interrupted = false;
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (options.interrupt && !interrupted && options.interrupt.stderr.test(stderr)) {
        interrupted = true;
        child.kill(options.interrupt.signal);
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 180_000);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * Runs `aiva …args` (the built CLI, in a child process, as a user would) and resolves to
 * its exit code and output. While another aiva node holds the host, tries again every
 * 2 s for up to `nodeWaitMs` (5 minutes by default).
 */
export async function runCli(args: readonly string[], options: RunCliOptions = {}): Promise<CliResult> {
  const deadline = Date.now() + (options.nodeWaitMs ?? 5 * 60_000);
  for (;;) {
    const r = await runOnce(args, options);
    if (r.code === 0 || !NODE_BUSY.test(r.stderr) || Date.now() >= deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

/** For assertion messages: everything a run said. */
export function explain(r: CliResult): string {
  return `exit ${r.code ?? r.signal}\n--- stdout\n${r.stdout}--- stderr\n${r.stderr}`;
}

/**
 * A fresh data directory (AIVA_HOME) whose image store is the shared one, so templates
 * stay cached between runs (as the server's tests do).
 */
export async function tempHome(prefix = 'aiva-cli-'): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), prefix));
  await mkdir(join(dataDir(), 'images'), { recursive: true });
  await symlink(join(dataDir(), 'images'), join(home, 'images'));
  return home;
}

/** Removes a directory made by `tempHome` (the shared image store is only linked). */
export async function removeHome(home: string): Promise<void> {
  await rm(join(home, 'images'), { force: true });
  await rm(home, { recursive: true, force: true });
}
