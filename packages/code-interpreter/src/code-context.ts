import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { Kernel } from './kernel.js';
import { type KernelSpec, kernelSpecFor, normaliseLanguage } from './kernel-specs.js';

/** A context as the API shows it (E2B's `Context`). */
export interface ContextInfo {
  id: string;
  language: string;
  cwd: string;
}

/** A request names what does not exist, or is not usable: a 4xx with this message. */
export class RequestError extends Error {
  override name = 'RequestError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface KernelLaunch {
  runtimeDir: string;
  /** How long a kernel may take to answer its first request. */
  readyTimeoutMs: number;
  /** Extra kernelspec arguments and environment per kernelspec name. */
  tune?: (spec: KernelSpec) => { args?: string[]; env?: Record<string, string> };
}

/**
 * One code context: a kernel of one language in one working directory, and the FIFO of
 * the runs waiting for it (one run at a time, in the order they came). A kernel that
 * died is started afresh by the next run; `kernelRuns` counts runs on the current one.
 */
export class CodeContext {
  private kernel: Kernel | undefined;
  private starting: Promise<Kernel> | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  /** Runs on the current kernel so far (0: a fresh kernel, which has no sandbox env yet). */
  kernelRuns = 0;
  /** The sandbox's env vars as the current kernel's first run set them. */
  sandboxEnvs: Record<string, string> = {};

  constructor(
    readonly info: ContextInfo,
    private readonly spec: KernelSpec,
    private readonly launch: KernelLaunch,
  ) {}

  /** The running kernel, started (and waited for) if there is none or it died. */
  async ensureKernel(): Promise<Kernel> {
    if (this.kernel?.alive) return this.kernel;
    if (!this.starting) {
      this.starting = this.startKernel().finally(() => {
        this.starting = undefined;
      });
    }
    return this.starting;
  }

  private async startKernel(): Promise<Kernel> {
    const tuned = this.launch.tune?.(this.spec) ?? {};
    const kernel = await Kernel.start({
      spec: this.spec,
      cwd: this.info.cwd,
      env: { ...process.env, ...tuned.env },
      runtimeDir: this.launch.runtimeDir,
      extraArgs: tuned.args,
    });
    await kernel.waitReady(this.launch.readyTimeoutMs);
    this.kernel = kernel;
    this.kernelRuns = 0;
    this.sandboxEnvs = {};
    return kernel;
  }

  /** Runs `fn` after every run queued before it (its failure does not stop the queue). */
  enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /** Starts a fresh kernel (state is lost, the working directory kept). */
  async restart(): Promise<void> {
    await this.kernel?.kill();
    this.kernel = undefined;
    await this.ensureKernel();
  }

  async close(): Promise<void> {
    await this.starting?.catch(() => {});
    await this.kernel?.kill();
  }
}

/**
 * The contexts of this sandbox: the default Python one (what a run without a context or
 * language uses), one default per other language made on first use, and those created
 * through `POST /contexts`.
 */
export class ContextManager {
  private readonly contexts = new Map<string, CodeContext>();
  private readonly defaults = new Map<string, Promise<CodeContext>>();

  constructor(
    private readonly launch: KernelLaunch,
    readonly defaultCwd: string,
  ) {}

  /** A new context with a warm kernel. */
  async create(language: string | undefined, cwd: string | undefined): Promise<CodeContext> {
    const lang = normaliseLanguage(language);
    const dir = cwd?.trim() ? cwd : this.defaultCwd;
    let spec: KernelSpec;
    try {
      spec = await kernelSpecFor(lang);
    } catch (e) {
      throw new RequestError(400, (e as Error).message);
    }
    const isDir = await stat(dir).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) throw new RequestError(400, `cwd "${dir}" is not a directory in the sandbox`);
    const ctx = new CodeContext({ id: randomUUID(), language: lang, cwd: dir }, spec, this.launch);
    try {
      await ctx.ensureKernel();
    } catch (e) {
      await ctx.close();
      throw e;
    }
    this.contexts.set(ctx.info.id, ctx);
    return ctx;
  }

  /** The default context of `language` (normalised), made on first use. */
  defaultFor(language: string | undefined): Promise<CodeContext> {
    const lang = normaliseLanguage(language);
    let made = this.defaults.get(lang);
    if (!made) {
      made = this.create(lang, this.defaultCwd);
      this.defaults.set(lang, made);
      made.catch(() => this.defaults.delete(lang));
    }
    return made;
  }

  /** The context `id`; a 404 RequestError with E2B's message when there is none. */
  get(id: string): CodeContext {
    const ctx = this.contexts.get(id);
    if (!ctx) throw new RequestError(404, `Context ${id} not found`);
    return ctx;
  }

  list(): ContextInfo[] {
    return [...this.contexts.values()].map((c) => ({ ...c.info }));
  }

  async remove(id: string): Promise<void> {
    const ctx = this.get(id);
    this.contexts.delete(id);
    for (const [lang, made] of this.defaults) {
      if ((await made.catch(() => undefined)) === ctx) this.defaults.delete(lang);
    }
    await ctx.close();
  }

  async closeAll(): Promise<void> {
    await Promise.all([...this.contexts.values()].map((c) => c.close()));
    this.contexts.clear();
    this.defaults.clear();
  }
}
