import { spawn } from 'node:child_process';
import { access, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type CommandError, runCommand } from './command.js';
import { processStartTime, signalProcess, waitForExit } from './proc.js';

/**
 * The node's LXCFS mount point. Under /run/aiva (beside the OCI runtimes' state and the
 * node lock) rather than the data directory: the mount lives as long as its daemon and
 * no longer than the boot, as /run does; there is one per host whatever AIVA_HOME says
 * (tests give every node a data directory of its own, and share the daemon); and
 * nothing that walks or deletes a data directory (du, backups, `rm -r` of a test's
 * home) descends into a FUSE tree that mirrors the host's cgroups.
 */
export const LXCFS_DIR = '/run/aiva/lxcfs';

/**
 * How the node runs lxcfs (5.0.3 here):
 * - `--enable-cfs`: the CPUs a sandbox sees (cpuinfo, stat, cpu/online) follow its CPU
 *   quota (cpu.max, cfs_quota_us) and not only its cpuset, so they agree with `vcpus`
 *   even where the sandbox is not pinned.
 * - Not `--enable-loadavg` (/proc/loadavg of the sandbox's own processes): its thread
 *   walks every process of every cgroup every 5 s, in the host's CPU time and outside
 *   any sandbox's limits: a fork bomb's thousands of processes make that the host's
 *   cost.
 * - `--disable-swap`: sandboxes have no swap (memory.swap is set to the memory limit),
 *   so free and /proc/swaps show none rather than a share of the host's.
 * - `--enable-pidfd`: lxcfs tracks each container's init by pidfd instead of by pid,
 *   which a reused pid cannot fool (the kernel has had pidfds since 5.3).
 */
export const LXCFS_FLAGS = ['--enable-cfs', '--disable-swap', '--enable-pidfd'];

/** The /proc files lxcfs serves (when it serves them) that a container binds over its own. */
const PROC_FILES = ['cpuinfo', 'diskstats', 'loadavg', 'meminfo', 'slabinfo', 'stat', 'swaps', 'uptime'];
/** The /sys files likewise: the online CPUs (glibc's get_nprocs, sysconf(_SC_NPROCESSORS_ONLN)). */
const SYS_FILES = ['devices/system/cpu/online'];

/** How long a daemon found answering is trusted without another check. */
const HEALTHY_FOR_MS = 5000;
/** How long containers start without lxcfs after it failed to start, before another try. */
const RETRY_AFTER_MS = 60_000;

/** A bind mount entry of an OCI config. */
export interface BindMount {
  destination: string;
  type: 'bind';
  source: string;
  options: string[];
}

export interface LxcfsOptions {
  /** Mount point (LXCFS_DIR for the node). */
  dir: string;
  /** Where lxcfs writes its pid (it holds a lock on it while it runs). */
  pidFile: string;
  /** lxcfs's own output. */
  log: string;
  /** The lxcfs program (`lxcfs` on PATH by default). */
  binary?: string;
}

export interface LxcfsHealth {
  ok: boolean;
  pid?: number;
  /**
   * It runs but did not answer in time: left alone rather than restarted, as the
   * running containers' /proc files would die with it.
   */
  slow?: boolean;
  /** Why not (or what runs). */
  detail: string;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** The filesystem type mounted at `dir` (from this process's mount table), if any. */
async function mountTypeAt(dir: string): Promise<string | undefined> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  let type: string | undefined;
  for (const line of mounts.split('\n')) {
    const [, point, fstype] = line.split(' ');
    if (point?.replace(/\\040/g, ' ') === dir) type = fstype; // the last one is on top
  }
  return type;
}

/**
 * One LXCFS daemon serving one mount point, so that a container sees its own cgroup's
 * limits in /proc (free, top, os.totalmem(), os.cpus()): the node's is at LXCFS_DIR.
 * The daemon is started detached, in a session of its own, so that it outlives a node
 * restart as the VMMs do (running containers keep reading through it); a node finds it
 * again by its pid file.
 */
export class Lxcfs {
  private pending: Promise<LxcfsHealth> | undefined;
  /** After a failed start, containers go without until then rather than each wait for another. */
  private retryAt = 0;
  /** The mounts of the last check that found the daemon answering, and until when they stand. */
  private recent: { mounts: BindMount[]; until: number } | undefined;
  /** Why the last `containerMounts` gave none (the daemon could not be started), for the logs. */
  lastError: string | undefined;

  constructor(readonly options: LxcfsOptions) {}

  /** The node's daemon: mount point LXCFS_DIR, pid file and log beside it in `stateRoot`. */
  static forNode(stateRoot = '/run/aiva'): Lxcfs {
    return new Lxcfs({
      dir: stateRoot === '/run/aiva' ? LXCFS_DIR : join(stateRoot, 'lxcfs'),
      pidFile: join(stateRoot, 'lxcfs.pid'),
      log: join(stateRoot, 'lxcfs.log'),
    });
  }

  private get binary(): string {
    return this.options.binary ?? 'lxcfs';
  }

  /** The pid in the pid file, if that process is an lxcfs serving our mount point. */
  private async daemonPid(): Promise<number | undefined> {
    const pid = Number((await readFile(this.options.pidFile, 'utf8').catch(() => '')).trim());
    if (!Number.isInteger(pid) || pid <= 0) return undefined;
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    const ours = basename(argv[0] ?? '') === basename(this.binary) && argv.includes(this.options.dir);
    return ours ? pid : undefined;
  }

  /**
   * Whether a daemon serves the mount point now: the pid file names a live lxcfs for it,
   * an lxcfs filesystem is mounted there, and one of its files reads. The read runs in a
   * child process with a deadline: a hung FUSE daemon would otherwise hold one of
   * Node's I/O threads forever.
   */
  async health(): Promise<LxcfsHealth> {
    const pid = await this.daemonPid();
    if (!pid) return { ok: false, detail: `no lxcfs runs for ${this.options.dir}` };
    const type = await mountTypeAt(this.options.dir);
    if (type !== 'fuse.lxcfs')
      return { ok: false, pid, detail: `lxcfs (pid ${pid}) runs but ${this.options.dir} is not its mount` };
    const probe = join(this.options.dir, 'proc', 'uptime');
    try {
      await runCommand('head', ['-c', '64', probe], { signal: AbortSignal.timeout(3000), killGraceMs: 500 });
    } catch (e) {
      if ((e as CommandError).aborted)
        return { ok: false, pid, slow: true, detail: `lxcfs (pid ${pid}) did not answer within 3 s` };
      const why = (e as Error).message.split('\n').slice(-1)[0];
      return { ok: false, pid, detail: `lxcfs (pid ${pid}) does not answer: ${why}` };
    }
    return { ok: true, pid, detail: `lxcfs (pid ${pid}) serves ${this.options.dir}` };
  }

  /**
   * Makes sure a daemon serves the mount point: starts one when none runs, and again
   * when the one that ran died (its dead mount, ENOTCONN, is lazily unmounted first;
   * containers that bound its files keep the dead ones until they restart). Concurrent
   * calls share one attempt. Rejects when lxcfs cannot be started, or runs but is slow.
   */
  ensure(): Promise<LxcfsHealth> {
    this.pending ??= this.ensureNow().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async ensureNow(): Promise<LxcfsHealth> {
    const health = await this.health();
    if (health.ok) return health;
    if (health.slow)
      throw new Error(`${health.detail}: not restarted, as running containers read through it`);
    // Unhealthy, so nothing to end gracefully: SIGKILL frees its pid file at once.
    await this.stop('SIGKILL');
    return this.start();
  }

  /** Starts a daemon on the (unmounted) mount point and waits until it answers. */
  private async start(): Promise<LxcfsHealth> {
    const { dir, pidFile } = this.options;
    await mkdir(dir, { recursive: true });
    if (!(await exists('/dev/fuse'))) throw new Error('lxcfs cannot run: this host has no /dev/fuse');
    const log = await open(this.options.log, 'a');
    let pid: number | undefined;
    let spawnError: Error | undefined;
    try {
      const child = spawn(this.binary, [...LXCFS_FLAGS, `--pidfile=${pidFile}`, dir], {
        detached: true,
        stdio: ['ignore', log.fd, log.fd],
      });
      child.on('error', (e) => {
        spawnError = e;
      });
      child.unref();
      pid = child.pid;
    } finally {
      await log.close();
    }
    // A program that is not there fails asynchronously (ENOENT): let that be heard.
    await new Promise((r) => setImmediate(r));
    const fail = async (why: string): Promise<never> => {
      const printed = (await readFile(this.options.log, 'utf8').catch(() => '')).trim();
      throw new Error(`lxcfs ${why}${printed ? `: ${printed.split('\n').slice(-5).join(' | ')}` : ''}`);
    };
    if (!pid || spawnError) return fail(`could not be started (${spawnError?.message ?? 'no pid'})`);
    const startTime = await processStartTime(pid);
    // Every container reads its /proc through it: the OOM killer should take anything else first.
    await writeFile(`/proc/${pid}/oom_score_adj`, '-1000').catch(() => {});
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (startTime === undefined || (await processStartTime(pid)) !== startTime)
        return fail('exited during start-up');
      if ((await mountTypeAt(dir)) === 'fuse.lxcfs') {
        const health = await this.health();
        if (health.ok) return health;
      }
      if (Date.now() > deadline) {
        await signalProcess(pid, startTime, 'SIGKILL');
        await waitForExit(pid, startTime, 5000);
        await this.stop('SIGKILL');
        return fail(`did not serve ${dir} within 10 s`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /**
   * Ends the daemon named by the pid file (only if it is an lxcfs for our mount point)
   * and removes its mount: lazily, as running containers may still hold binds of it.
   */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    this.recent = undefined;
    const pid = await this.daemonPid();
    const startTime = pid ? await processStartTime(pid) : undefined;
    if (pid && startTime !== undefined) {
      // SIGTERM unmounts and exits (within about 5 s); a daemon that hangs gets SIGKILL.
      await signalProcess(pid, startTime, signal);
      if (!(await waitForExit(pid, startTime, 10_000))) {
        await signalProcess(pid, startTime, 'SIGKILL');
        await waitForExit(pid, startTime, 5000);
      }
    }
    if ((await mountTypeAt(this.options.dir)) !== undefined) {
      await runCommand('umount', ['-l', this.options.dir]);
    }
  }

  /**
   * Bind mounts (for an OCI config) of every file the daemon serves over the
   * container's own, starting the daemon if need be. None when it cannot be made to
   * serve (`lastError` says why; no other try for a minute): the container then starts
   * and sees the host's.
   */
  async containerMounts(): Promise<BindMount[]> {
    if (Date.now() < this.retryAt) return [];
    // A daemon seen answering a moment ago is taken as answering: the check runs a
    // child process, which every create would otherwise pay for.
    if (this.recent && Date.now() < this.recent.until) return this.recent.mounts;
    try {
      await this.ensure();
      this.lastError = undefined;
    } catch (e) {
      this.lastError = (e as Error).message;
      this.retryAt = Date.now() + RETRY_AFTER_MS;
      return [];
    }
    const bind = (source: string, destination: string): BindMount => ({
      destination,
      type: 'bind',
      source,
      options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
    });
    const served = new Set(await readdir(join(this.options.dir, 'proc')).catch(() => [] as string[]));
    const mounts = PROC_FILES.filter((f) => served.has(f)).map((f) =>
      bind(join(this.options.dir, 'proc', f), `/proc/${f}`),
    );
    for (const f of SYS_FILES) {
      const source = join(this.options.dir, 'sys', f);
      if (await exists(source)) mounts.push(bind(source, `/sys/${f}`));
    }
    this.recent = { mounts, until: Date.now() + HEALTHY_FOR_MS };
    return mounts;
  }
}

/**
 * For `aiva doctor`: whether container sandboxes will see their own limits in /proc
 * (lxcfs installed, /dev/fuse present, and whether the node's daemon runs), without
 * starting anything.
 */
export async function lxcfsStatus(
  lxcfs = Lxcfs.forNode(),
): Promise<{ ok: boolean; detail: string; fix?: string }> {
  const version = await runCommand(lxcfs.options.binary ?? 'lxcfs', ['--version']).then(
    (r) => (r.stdout || r.stderr).trim().replaceAll('"', ''),
    () => undefined,
  );
  const effect = 'free, nproc and /proc/meminfo, cpuinfo, stat inside show the host, not the sandbox';
  if (!version)
    return { ok: false, detail: `lxcfs is not installed: ${effect}`, fix: 'apt-get install lxcfs' };
  if (!(await exists('/dev/fuse')))
    return { ok: false, detail: `no /dev/fuse for lxcfs ${version}: ${effect}`, fix: 'modprobe fuse' };
  const health = await lxcfs.health();
  const running = health.ok ? health.detail : `${health.detail}; the node starts it with the next container`;
  return {
    ok: true,
    detail: `/proc shows each sandbox its own CPUs and memory: lxcfs ${version}, ${running}`,
  };
}
