import type { TemplateDefinition } from '../image/image-types.js';

/** One step of a template build, as E2B's `TemplateStep`: RUN, COPY, ENV, WORKDIR, USER (ADD = COPY, ARG = ENV). */
export interface BuildStep {
  type: string;
  args: string[];
  /** COPY: the hash of the uploaded files (the SDK's), which names their archive. */
  filesHash?: string;
  /** Run it (and every later step) even if cached. */
  force?: boolean;
}

/** Who and where a build's commands run as, and with what environment; what each step leaves to the next. */
export interface BuildContext {
  user: string;
  /** Absolute; unset means the user's home. */
  workdir?: string;
  /** The build's environment (image ENV and ENV steps): for later steps and the start command, not for sandboxes. */
  env: Record<string, string>;
  /**
   * The command the image says to run (its ENTRYPOINT then CMD), kept from a registry
   * image or archive through every build made from it: what `aiva deploy <env> <image>`
   * runs as the service when no command is given. Never part of a step's cache key.
   */
  command?: string[];
}

/** What a build starts from. */
export type BuildBase =
  /** An aiva template: a recipe's name or a built template's definition, with the context its build ended in. */
  | { template: string | TemplateDefinition; context?: BuildContext }
  /** An image on a registry (`e2bdev/base` is aiva's base template). */
  | { image: string; credentials?: { username: string; password: string } }
  /** An image archive on this host: a `docker save` tar, an OCI archive or an OCI layout directory. */
  | { archive: string };

export interface BuildSpec {
  name: string;
  base: BuildBase;
  steps: BuildStep[];
  startCmd?: string;
  readyCmd?: string;
  /** Fail at the base, before any step, when the base has no command (ENTRYPOINT/CMD) to run. */
  requireCommand?: boolean;
  /** Rebuild every step, cached or not (`skipCache`). */
  force?: boolean;
  vcpus: number;
  memoryMiB: number;
  diskSizeMiB?: number;
  /** The gzip tar archive a COPY step's files hash names, on this host. */
  filesArchive(hash: string): string;
}

export type BuildLogLevel = 'debug' | 'info' | 'warn' | 'error';

/** A line of a build's log: `step` is `base`, the step's number from 1, or `finalize` (as E2B's). */
export interface BuildLogEntry {
  timestamp: Date;
  level: BuildLogLevel;
  step: string;
  message: string;
}

export interface BuildResult {
  definition: TemplateDefinition;
  /** The context the build ended in: what a build from this template starts with. */
  context: BuildContext;
  /**
   * The layers of the build's steps (made, or reused from the cache): what it holds beyond
   * its base. Never the base's layers (a recipe's, a parent template's, a registry image's).
   */
  layers: string[];
  /** How many steps were cached. */
  cachedSteps: number;
}

/** A build failed at `step` (`base`, a step number, `finalize`); the message says how. */
export class BuildStepError extends Error {
  override name = 'BuildStepError';
  /** The layers the build's steps before the failure made or reused (what a delete frees). */
  layers: string[] = [];
  constructor(
    readonly step: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
