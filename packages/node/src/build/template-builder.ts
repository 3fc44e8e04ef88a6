import { randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execInSandbox } from '../envd/envd-client.js';
import { uploadToSandbox } from '../envd/envd-http.js';
import { readJson, writeJson } from '../image/artefacts.js';
import type { BuildReporter } from '../image/build-reporter.js';
import type { ImageStore } from '../image/image-store.js';
import type { TemplateDefinition } from '../image/image-types.js';
import { contentHash } from '../image/recipe.js';
import type { SandboxManager } from '../sandbox/sandbox-manager.js';
import {
  type BuildContext,
  type BuildLogEntry,
  type BuildLogLevel,
  type BuildResult,
  type BuildSpec,
  type BuildStep,
  BuildStepError,
} from './build-types.js';
import { COPY_SCRIPT, copySourcePrefix, expandEnv, USER_SCRIPT, WORKDIR_SCRIPT } from './step-scripts.js';

/** Bump when what a step makes from the same inputs changes, so older cached steps are not reused. */
const STEP_VERSION = 3;

/** The disk of a template built from a registry image, unless the build asks for more. */
const DEFAULT_IMAGE_DISK_MIB = 4096;

/** More layers than this do not fit overlayfs' mount options. */
const MAX_LAYERS = 50;

/** What a cached step left: its layer (none if it changed no file) and the context after it. */
interface StepRecord {
  key: string;
  layer?: string;
  context: BuildContext;
}

interface Chain {
  key: string;
  /** Content layers, top first. */
  layers: string[];
  context: BuildContext;
  base: TemplateDefinition;
  /** The base's command (an image's ENTRYPOINT and CMD), carried to the build's end context. */
  command?: string[];
  /** Set once a step was forced (`force`, `skipCache`): every later one is forced too. */
  forced: boolean;
}

/** Files the sandbox owns, not the template (as Docker's bind mounts): never part of a layer. */
const SANDBOX_FILES = ['etc/resolv.conf', 'etc/hosts', 'etc/hostname'];

/**
 * Builds templates: each step runs in a build sandbox (a container on the layers so far),
 * and what it changed becomes a layer cached under a key of its parent's key and its
 * own inputs, so a rebuild redoes only the steps from the first changed one on.
 */
export class TemplateBuilder {
  constructor(
    private readonly images: ImageStore,
    private readonly sandboxes: SandboxManager,
  ) {}

  private stepFile(key: string): string {
    return join(this.images.paths.root, 'steps', `${key}.json`);
  }

  async build(
    spec: BuildSpec,
    log: (entry: BuildLogEntry) => void,
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const made: string[] = [];
    try {
      return await this.buildSteps(spec, log, made, signal);
    } catch (e) {
      const failure =
        e instanceof BuildStepError ? e : new BuildStepError('base', (e as Error).message, { cause: e });
      failure.layers = [...new Set(made)];
      throw failure;
    }
  }

  private async buildSteps(
    spec: BuildSpec,
    log: (entry: BuildLogEntry) => void,
    made: string[],
    signal?: AbortSignal,
  ): Promise<BuildResult> {
    const say = (step: string, message: string, level: BuildLogLevel = 'info') =>
      log({ timestamp: new Date(), level, step, message });
    let chain = await this.base(spec, (m) => say('base', m), signal);
    if (spec.requireCommand && !chain.command?.length)
      throw new BuildStepError(
        'base',
        `${'image' in spec.base ? spec.base.image : 'the image'} has no ENTRYPOINT or CMD: give the command to run`,
      );
    let cached = 0;
    // E2B's default user phase: `user`, with passwordless sudo, whatever the base.
    const steps: [string, BuildStep][] = [
      ['base', { type: 'USER', args: ['user', 'true'] }],
      ...spec.steps.map((s, i): [string, BuildStep] => [String(i + 1), s]),
    ];
    for (const [label, step] of steps) {
      signal?.throwIfAborted();
      const key = contentHash({
        v: STEP_VERSION,
        parent: chain.key,
        type: step.type.toUpperCase(),
        args: step.args,
        files: step.filesHash ?? null,
      });
      const forced = chain.forced || spec.force === true || step.force === true;
      const hit = forced ? undefined : await this.cachedStep(key);
      const title = `${step.type.toUpperCase()} ${step.args.join(' ')}`.trim();
      // `[3/7] RUN …`: the step's number, as the log's readers (the SDK drops `step`) see it.
      const where = label === 'base' ? '[base]' : `[${label}/${spec.steps.length}]`;
      if (hit) {
        say(label, `${where} CACHED ${title}`);
        cached++;
      } else {
        say(label, `${where} ${title}`);
      }
      const record =
        hit ??
        (await this.runStep(
          spec,
          { ...chain, forced },
          key,
          label,
          step,
          (m, level) => say(label, m, level),
          signal,
        ).catch((e: unknown) => {
          if (e instanceof BuildStepError) throw e;
          // The layer store wraps what failed inside a layer's making: the step's own error is the cause.
          const cause = (e as Error).cause;
          if (cause instanceof BuildStepError) throw cause;
          throw new BuildStepError(label, (e as Error).message, { cause: e });
        }));
      if (record.layer) made.push(record.layer);
      chain = {
        ...chain,
        key,
        layers: record.layer ? [record.layer, ...chain.layers] : chain.layers,
        context: record.context,
        forced,
      };
      if (chain.layers.length > MAX_LAYERS)
        throw new BuildStepError(label, `a template can have at most ${MAX_LAYERS} layers: merge some steps`);
    }
    // Step records made before contexts kept a command may carry none (or a stale one).
    const { command: _stale, ...stepContext } = chain.context;
    const context: BuildContext = chain.command ? { ...stepContext, command: chain.command } : stepContext;
    const start = spec.startCmd
      ? { cmd: spec.startCmd, ready: spec.readyCmd, env: context.env }
      : chain.base.start;
    const definition: TemplateDefinition = {
      name: spec.name,
      layers: chain.layers,
      diskSizeMiB: Math.max(spec.diskSizeMiB ?? 0, chain.base.diskSizeMiB),
      defaults: {
        user: context.user,
        workdir: context.workdir ?? (context.user === 'root' ? '/root' : `/home/${context.user}`),
        vcpus: spec.vcpus,
        memoryMiB: spec.memoryMiB,
      },
      ...(start ? { start } : {}),
    };
    if (definition.start) await this.checkStart(definition, (m) => say('finalize', m), signal);
    say(
      'finalize',
      `template ${spec.name}: ${definition.layers.length} layers, ${cached} of ${steps.length} steps cached`,
    );
    return { definition, context, layers: [...new Set(made)], cachedSteps: cached };
  }

  private async base(spec: BuildSpec, say: (m: string) => void, signal?: AbortSignal): Promise<Chain> {
    const base = spec.base;
    if ('archive' in base || ('image' in base && !/^e2bdev\/base(:latest)?$/.test(base.image))) {
      const from = 'archive' in base ? 'an image archive' : base.image;
      say(`FROM ${from}`);
      const reporter = sayingReporter(say);
      const image = await ('archive' in base
        ? this.images.oci.import(base.archive, { reporter, signal })
        : this.images.oci.pull(base.image, { credentials: base.credentials, reporter, signal })
      ).catch((e: Error) => {
        throw new BuildStepError('base', e.message, { cause: e });
      });
      // An image starts as root (E2B's), with the image's environment.
      const context: BuildContext = { user: 'root', workdir: undefined, env: image.config.env };
      const command = [...(image.config.entrypoint ?? []), ...(image.config.cmd ?? [])];
      const definition: TemplateDefinition = {
        name: image.reference,
        layers: image.layers,
        diskSizeMiB: DEFAULT_IMAGE_DISK_MIB,
        defaults: { user: 'root', workdir: '/root', vcpus: spec.vcpus, memoryMiB: spec.memoryMiB },
      };
      return { ...chainOf(definition, context), ...(command.length ? { command } : {}) };
    }
    const template = 'template' in base ? base.template : 'base';
    const definition =
      typeof template === 'string' ? await this.images.recipeTemplate(template, { signal }) : template;
    // aiva's base as an image (`e2bdev/base`) starts as root in root's home; a template where its build ended.
    // A template built from an image hands on the image's command (outside the cache key).
    const { command, ...inherited } = ('template' in base ? base.context : undefined) ?? {};
    const context: BuildContext =
      'template' in base && base.context
        ? (inherited as BuildContext)
        : 'template' in base
          ? { user: definition.defaults.user, workdir: definition.defaults.workdir, env: {} }
          : { user: 'root', workdir: undefined, env: {} };
    say(`FROM ${'image' in base ? base.image : definition.name}`);
    return { ...chainOf(definition, context), ...(command?.length ? { command } : {}) };
  }

  private async cachedStep(key: string): Promise<StepRecord | undefined> {
    const record = await readJson<StepRecord>(this.stepFile(key));
    if (!record) return undefined;
    if (record.layer && !(await this.images.artefacts.layer(record.layer))) return undefined;
    return record;
  }

  /** Runs one step (in a build sandbox unless it only changes the context) and caches its result. */
  private async runStep(
    spec: BuildSpec,
    chain: Chain,
    key: string,
    label: string,
    step: BuildStep,
    say: (m: string, level?: BuildLogLevel) => void,
    signal?: AbortSignal,
  ): Promise<StepRecord> {
    const type = step.type.toUpperCase();
    const ctx = chain.context;
    let record: StepRecord;
    if (type === 'ENV' || type === 'ARG') {
      if (step.args.length === 0 || step.args.length % 2 !== 0)
        throw new BuildStepError(label, 'ENV requires both a key and value arguments');
      const env = { ...ctx.env };
      for (let i = 0; i < step.args.length; i += 2)
        env[step.args[i] as string] = expandEnv(step.args[i + 1] ?? '', env);
      record = { key, context: { ...ctx, env } };
    } else if (['RUN', 'COPY', 'ADD', 'WORKDIR', 'USER'].includes(type)) {
      record = await this.inSandbox(spec, chain, key, label, signal, async (run, upload) => {
        if (type === 'RUN') {
          const [cmd, user] = step.args;
          if (!cmd) throw new BuildStepError(label, 'RUN requires a command');
          await run(cmd, user || ctx.user, say, `failed to run command '${cmd}'`);
          return ctx;
        }
        if (type === 'COPY' || type === 'ADD') {
          const [src, dest, owner, mode] = step.args;
          if (!src || !dest) throw new BuildStepError(label, 'COPY requires a source and a destination');
          if (!step.filesHash) throw new BuildStepError(label, 'COPY requires files hash to be set');
          const archive = `/tmp/aiva-files-${step.filesHash}.tar.gz`;
          await upload(spec.filesArchive(step.filesHash), archive);
          const who = owner || `${ctx.user}:${ctx.user}`;
          const owner2 = who.includes(':') ? who : `${who}:${who}`;
          const args = [
            archive,
            copySourcePrefix(src),
            dest,
            owner2,
            mode ?? '',
            ctx.workdir ?? '',
            ctx.user,
          ];
          await run(script(COPY_SCRIPT, args), 'root', say, `failed to copy ${src} to ${dest}`);
          return ctx;
        }
        if (type === 'WORKDIR') {
          const [path] = step.args;
          if (!path) throw new BuildStepError(label, 'WORKDIR requires a path');
          const abs = path.startsWith('/') ? path : `${ctx.workdir ?? '/'}/${path}`;
          const real = await run(
            script(WORKDIR_SCRIPT, [abs, `${ctx.user}:${ctx.user}`]),
            'root',
            () => {},
            `failed to set workdir ${path}`,
          );
          return { ...ctx, workdir: real.trim() };
        }
        const [user, sudo] = step.args;
        if (!user) throw new BuildStepError(label, 'USER requires a user name');
        const home = (
          await run(script(USER_SCRIPT, [user, sudo ?? '']), 'root', () => {}, `failed to set user ${user}`)
        ).trim();
        // The default user phase leaves the workdir at the user's home (E2B's: unset).
        return {
          ...ctx,
          user,
          workdir: sudo === 'true' && chain.context.user === 'root' ? home : ctx.workdir,
        };
      });
    } else {
      throw new BuildStepError(
        label,
        `the step type ${step.type} is not supported (RUN, COPY, ADD, ENV, ARG, WORKDIR, USER are)`,
      );
    }
    await mkdir(join(this.images.paths.root, 'steps'), { recursive: true });
    const tmp = `${this.stepFile(key)}.${process.pid}.tmp`;
    await writeJson(tmp, record);
    await rename(tmp, this.stepFile(key));
    return record;
  }

  /**
   * Starts a build sandbox on the chain's layers, lets `body` change it, and keeps what
   * changed as the step's layer (none if nothing did). The sandbox is gone afterwards,
   * whatever happened.
   */
  private async inSandbox(
    spec: BuildSpec,
    chain: Chain,
    key: string,
    label: string,
    signal: AbortSignal | undefined,
    body: (
      run: (
        cmd: string,
        user: string,
        say: (m: string, level?: BuildLogLevel) => void,
        what: string,
      ) => Promise<string>,
      upload: (from: string, to: string) => Promise<void>,
    ) => Promise<BuildContext>,
  ): Promise<StepRecord> {
    // A forced step is made anew: its layer gets a hash of its own (the cached one may be
    // in use by other templates), and its record then points at it.
    const layerHash = chain.forced ? contentHash({ key, forced: randomUUID() }) : key;
    let context: BuildContext = chain.context;
    await this.images.artefacts.ensureLayer(
      layerHash,
      { role: 'step', template: `${spec.name} step ${label}` },
      `step ${label}`,
      {},
      async (rootfs) => {
        const sandbox = await this.sandboxes.create({
          signal,
          driver: 'container',
          template: { ...chain.base, name: `${spec.name}-build`, layers: chain.layers, start: undefined },
          vcpus: spec.vcpus,
          memoryMiB: spec.memoryMiB,
        });
        try {
          const address = sandbox.network?.address as string;
          const run = async (
            cmd: string,
            user: string,
            say: (m: string, level?: BuildLogLevel) => void,
            what: string,
          ) => {
            const lines = (level: BuildLogLevel) => {
              let rest = '';
              return (chunk: Uint8Array) => {
                const text = rest + Buffer.from(chunk).toString('utf8');
                const parts = text.split('\n');
                rest = parts.pop() ?? '';
                for (const p of parts) say(p, level);
              };
            };
            const r = await execInSandbox(address, cmd, {
              user,
              cwd: chain.context.workdir,
              envs: chain.context.env,
              accessToken: sandbox.accessToken,
              onStdout: lines('info'),
              onStderr: lines('info'),
              timeoutMs: 3_600_000,
              signal,
            });
            if (r.exitCode !== 0)
              throw new BuildStepError(
                label,
                `${what}: ${r.status}${r.stderr.trim() ? `: ${r.stderr.trim().split('\n').slice(-5).join('\n')}` : ''}`,
              );
            return r.stdout;
          };
          const upload = (from: string, to: string) =>
            uploadToSandbox(address, to, createReadStream(from), {
              user: 'root',
              accessToken: sandbox.accessToken as string,
            });
          context = await body(run, upload);
          await this.sandboxes.saveChanges(sandbox.id, rootfs);
        } finally {
          await this.sandboxes.kill(sandbox.id).catch(() => {});
          // The build sandbox's image (this chain with the guest layer) is not a template anyone keeps.
          await this.images.discardTemplate(sandbox.template.hash).catch(() => {});
        }
        for (const f of SANDBOX_FILES) await rm(join(rootfs, f), { force: true });
      },
    );
    const empty = (await readdir(this.images.artefacts.layerRootfs(layerHash)).catch(() => [])).length === 0;
    if (empty)
      await this.images.artefacts.removeLocked(
        `layer-${layerHash}`,
        this.images.artefacts.layerDir(layerHash),
      );
    return { key, ...(empty ? {} : { layer: layerHash }), context };
  }

  /** Starts a sandbox of the finished template: its start command must pass its ready check. */
  private async checkStart(
    definition: TemplateDefinition,
    say: (m: string) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    say(`start command: ${definition.start?.cmd}; ready check: ${definition.start?.ready ?? '(none)'}`);
    signal?.throwIfAborted();
    const sandbox = await this.sandboxes
      .create({ driver: 'container', template: definition })
      .catch((e: Error) => {
        throw new BuildStepError('finalize', e.message, { cause: e });
      });
    await this.sandboxes.kill(sandbox.id).catch(() => {});
    say('the start command is ready');
  }
}

/** Where a build starts: its base's layers and context, keyed by both. */
function chainOf(base: TemplateDefinition, context: BuildContext): Chain {
  return {
    key: contentHash({ v: STEP_VERSION, base: base.layers, context }),
    layers: base.layers,
    context,
    base,
    forced: false,
  };
}

/** An image pull's progress as build log lines. */
function sayingReporter(say: (m: string) => void): BuildReporter {
  return {
    step: (_id, title, state) => say(state === 'cached' ? `${title} (cached)` : title),
    progress: () => {},
    output: (_id, line) => say(line),
    finished: () => {},
  };
}

/** A script and its positional parameters as one `sh -c` command line for envd's bash. */
function script(body: string, args: string[]): string {
  const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
  return `sh -c ${q(body)} sh ${args.map(q).join(' ')}`;
}
