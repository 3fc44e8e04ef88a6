// A throwaway sandbox for envd before the container runtime exists: the guest layer of
// the freshly built envd (with its busybox, tini and node) over the base template's
// Debian layer as the read-only lower layers of an overlay, entered through private
// mount, pid, uts and ipc namespaces with chroot, running the real guest init
// (tini → envd). It shares the host's network
// namespace so that envd listens on host loopback, where the e2b SDK's debug mode
// (localhost:49983) finds it. Never touches the host's own /home.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { access, mkdir, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { dataDir, ImageStore } from '@aiva/node';
import { ENVD_PORT } from '@aiva/protocol';

const execFileP = promisify(execFile);

/** The repository's images/ directory and envd's guest files (tests run from dist/test/helpers). */
export const repoImages = fileURLToPath(new URL('../../../../../images', import.meta.url));
export const envdGuestDir = fileURLToPath(new URL('../../guest', import.meta.url));

export const ENVD_URL = `http://127.0.0.1:${ENVD_PORT}`;

export interface SandboxOptions {
  /** A small tmpfs mounted at this guest path (for disk-full tests). */
  smallTmpfs?: { path: string; sizeKiB: number };
}

/**
 * The overlay lower layers, top first: the guest layer of this envd and the base
 * template's Debian layer (built, about a minute, if the store lacks it).
 */
export async function lowerLayers(): Promise<string[]> {
  const store = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir: envdGuestDir });
  const base = await store.recipeTemplate('base');
  const guest = await store.ensureGuestLayer('base');
  return [guest, base.layers[0] as string].map((h) => store.artefacts.layerRootfs(h));
}

/** The guest init, tini, as /proc/PID/cmdline shows it (by path since the guest layer). */
const isInit = (cmd: string) => /^(\S*\/)?tini /.test(cmd);

async function processes(): Promise<
  { pid: number; ppid: number; state: string; root: string; cmd: string }[]
> {
  const out = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    try {
      const statText = await readFile(`/proc/${pid}/stat`, 'utf8');
      const after = statText.slice(statText.lastIndexOf(')') + 2).split(' ');
      const root = await readlink(`/proc/${pid}/root`).catch(() => '');
      const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ').trim();
      out.push({ pid, ppid: Number(after[1]), state: after[0] ?? '?', root, cmd });
    } catch {
      // gone while we looked
    }
  }
  return out;
}

export class GuestSandbox {
  private exited = false;
  private log = '';

  private constructor(
    /** The temp directory holding upper/, work/ and root/ (the chroot). */
    readonly dir: string,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d: Buffer) => {
      this.log += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      this.log += d.toString();
    });
    child.once('exit', () => {
      this.exited = true;
    });
  }

  get root(): string {
    return join(this.dir, 'root');
  }

  /** What envd and init printed so far. */
  get output(): string {
    return this.log;
  }

  /** Host path of a path inside the sandbox. */
  hostPath(guestPath: string): string {
    return join(this.root, guestPath);
  }

  static async start(options: SandboxOptions = {}): Promise<GuestSandbox> {
    const lower = (await lowerLayers()).join(':');
    const dir = await mkdtemp('/tmp/aiva-envd-test-');
    await mkdir(join(dir, 'upper'));
    await mkdir(join(dir, 'work'));
    await mkdir(join(dir, 'root'));
    const root = join(dir, 'root');
    const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
    let script = `mount -t overlay overlay -o lowerdir=${q(lower)},upperdir=${q(join(dir, 'upper'))},workdir=${q(join(dir, 'work'))} ${q(root)}`;
    if (options.smallTmpfs) {
      const p = join(root, options.smallTmpfs.path);
      script += ` && mkdir -p ${q(p)} && mount -t tmpfs -o size=${options.smallTmpfs.sizeKiB}k,mode=1777 tmpfs ${q(p)}`;
    }
    script += ` && exec chroot ${q(root)} /usr/local/lib/aiva/init`;
    const child = spawn(
      'unshare',
      [
        '--mount',
        '--pid',
        '--fork',
        '--uts',
        '--ipc',
        '--propagation',
        'private',
        '--kill-child',
        'sh',
        '-c',
        script,
      ],
      {
        env: { PATH: process.env.PATH, ENVD_HOST: '127.0.0.1', ENVD_PORT: String(ENVD_PORT) },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const sandbox = new GuestSandbox(dir, child);
    try {
      await sandbox.waitHealthy();
    } catch (e) {
      await sandbox.stop();
      throw e;
    }
    return sandbox;
  }

  private async waitHealthy(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`the sandbox exited before envd was up:\n${this.log}`);
      const ok = await fetch(`${ENVD_URL}/health`, { signal: AbortSignal.timeout(1000) })
        .then((r) => r.status === 204 && this.log.includes('listening'))
        .catch(() => false);
      if (ok) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`envd did not answer /health within 30 s:\n${this.log}`);
  }

  /** Processes running inside the sandbox (host pids). */
  async processes(): Promise<{ pid: number; ppid: number; state: string; cmd: string }[]> {
    return (await processes()).filter((p) => p.root === this.root);
  }

  /** envd's host pid. */
  async envdPid(): Promise<number> {
    const p = (await this.processes()).find((x) => x.cmd.includes('envd.js') && !isInit(x.cmd));
    if (!p) throw new Error('envd is not running');
    return p.pid;
  }

  /** Open file descriptors of envd. */
  async envdFds(): Promise<number> {
    return (await readdir(`/proc/${await this.envdPid()}/fd`)).length;
  }

  /** envd's child processes (commands, PTY relays, watch helpers). */
  async envdChildren(): Promise<string[]> {
    const pid = await this.envdPid();
    return (await this.processes()).filter((p) => p.ppid === pid).map((p) => `${p.pid} ${p.cmd}`);
  }

  /** Zombie processes in the sandbox. */
  async zombies(): Promise<string[]> {
    return (await this.processes()).filter((p) => p.state === 'Z').map((p) => `${p.pid} ${p.cmd}`);
  }

  /** Runs a command inside the sandbox as root, outside envd (to check what envd did). */
  async exec(args: string[]): Promise<{ stdout: string; stderr: string }> {
    const init = (await this.processes()).find((p) => isInit(p.cmd));
    if (!init) throw new Error('the sandbox has no init');
    return execFileP('nsenter', ['-t', String(init.pid), '-m', '-p', '-u', '-i', '-r', '-w', ...args], {
      env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    });
  }

  /** POST /init, as the node agent does after boot or restore. */
  async init(body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
    return fetch(`${ENVD_URL}/init`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  }

  /** Kills everything in the sandbox and removes it; safe to call twice. */
  async stop(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGKILL'); // --kill-child: the namespace's init, and so all of it, dies too
      await gone;
    }
    const deadline = Date.now() + 10_000;
    while ((await this.processes()).length > 0) {
      if (Date.now() > deadline)
        throw new Error(`processes outlived the sandbox: ${JSON.stringify(await this.processes())}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** What a stopped sandbox may not leave behind: mounts, processes, its directory, a listener. */
export async function leftovers(sandbox: GuestSandbox): Promise<string[]> {
  const out: string[] = [];
  const mounts = (await readFile('/proc/mounts', 'utf8')).split('\n').filter((l) => l.includes(sandbox.dir));
  out.push(...mounts.map((m) => `mount: ${m}`));
  out.push(
    ...(await processes())
      .filter((p) => p.root.startsWith(sandbox.dir))
      .map((p) => `process: ${p.pid} ${p.cmd}`),
  );
  if (
    await access(sandbox.dir).then(
      () => true,
      () => false,
    )
  ) {
    out.push(`directory: ${sandbox.dir}`);
  }
  const listening = await fetch(`${ENVD_URL}/health`, { signal: AbortSignal.timeout(1000) }).then(
    () => true,
    () => false,
  );
  if (listening) out.push(`something still listens on ${ENVD_URL}`);
  return out;
}
