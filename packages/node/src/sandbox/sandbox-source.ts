import { availableParallelism, totalmem } from 'node:os';
import type { BuildReporter } from '../image/build-reporter.js';
import type { ImageStore } from '../image/image-store.js';
import type { ResolvedKernel, ResolvedTemplate, TemplateDefinition } from '../image/image-types.js';
import {
  type DriverName,
  type SandboxResources,
  type SandboxRuntime,
  SandboxSpecError,
} from '../runtime/types.js';
import type { CheckpointStore } from './checkpoint-store.js';
import type { CheckpointRecord } from './sandbox-record.js';

/** What a create asks for about where a sandbox comes from and how big it is. */
export interface SourceRequest {
  /** A recipe template's name, or a built template's definition. */
  template?: string | TemplateDefinition;
  driver?: DriverName;
  vcpus?: number;
  memoryMiB?: number;
  diskMiB?: number;
  fromCheckpoint?: string;
  reporter?: BuildReporter;
  signal?: AbortSignal;
}

/** What a sandbox is made from: its driver, images and size, and the checkpoint it copies, if any. */
export interface SandboxSource {
  driver: DriverName;
  runtime: SandboxRuntime;
  templateName: string;
  template: ResolvedTemplate;
  kernel?: ResolvedKernel;
  resources: SandboxResources;
  checkpoint?: CheckpointRecord;
}

export interface SourceParts {
  images: ImageStore;
  checkpoints: CheckpointStore;
  runtime(driver: DriverName): SandboxRuntime;
  defaultDriver: DriverName;
}

/**
 * Resolves a create's template (building it if needed) or checkpoint, its driver and
 * size; every refusal is a SandboxSpecError (or the image store's RecipeError) before
 * anything is made.
 */
export function resolveSource(request: SourceRequest, parts: SourceParts): Promise<SandboxSource> {
  return request.fromCheckpoint
    ? fromCheckpoint(request.fromCheckpoint, request, parts)
    : fromTemplate(request, parts);
}

async function fromTemplate(request: SourceRequest, parts: SourceParts): Promise<SandboxSource> {
  const driver = request.driver ?? parts.defaultDriver;
  const runtime = parts.runtime(driver);
  let template = await parts.images.ensureTemplate(request.template ?? 'base', {
    reporter: request.reporter,
    signal: request.signal,
  });
  if (runtime.capabilities.guestKernel) template = await parts.images.ensureDisk(template, request);
  const resources = checkResources(request, {
    vcpus: Math.min(template.defaults.vcpus, availableParallelism()),
    memoryMiB: template.defaults.memoryMiB,
    diskMiB: template.diskSizeMiB,
  });
  const kernel = runtime.capabilities.guestKernel ? await parts.images.ensureKernel(request) : undefined;
  return { driver, runtime, templateName: template.name, template, resources, kernel };
}

/** A create from the checkpoint `name` runs the checkpoint's driver, template, kernel and size. */
async function fromCheckpoint(
  name: string,
  request: SourceRequest,
  parts: SourceParts,
): Promise<SandboxSource> {
  const checkpoint = await parts.checkpoints.get(name);
  const { driver, resources } = checkpoint;
  const differs = [
    request.driver !== undefined && request.driver !== driver && `driver ${request.driver}`,
    request.template !== undefined &&
      (typeof request.template === 'string' ? request.template : request.template.name) !==
        checkpoint.template.name &&
      `template ${typeof request.template === 'string' ? request.template : request.template.name}`,
    request.vcpus !== undefined && request.vcpus !== resources.vcpus && `${request.vcpus} vcpus`,
    request.memoryMiB !== undefined &&
      request.memoryMiB !== resources.memoryMiB &&
      `${request.memoryMiB} MiB`,
    request.diskMiB !== undefined && request.diskMiB !== resources.diskMiB && `a ${request.diskMiB} MiB disk`,
  ].filter(Boolean);
  if (differs.length > 0)
    throw new SandboxSpecError(
      `checkpoint ${name} is a ${driver} sandbox of its own size: not ${differs.join(', ')}`,
    );
  const runtime = parts.runtime(driver);
  let template = await parts.images.templateByHash(checkpoint.template.hash);
  // A checkpoint made on another node: this node may not have made the disk or kernel yet.
  if (template && runtime.capabilities.guestKernel)
    template = await parts.images.ensureDisk(template, request);
  let kernel = checkpoint.kernel ? await parts.images.kernelByHash(checkpoint.kernel) : undefined;
  if (checkpoint.kernel && !kernel) {
    const made = await parts.images.ensureKernel(request);
    if (made.hash === checkpoint.kernel) kernel = made;
  }
  if (!template || (checkpoint.kernel && !kernel))
    throw new SandboxSpecError(`checkpoint ${name} needs an image that is no longer in the store`);
  return {
    driver,
    runtime,
    templateName: checkpoint.template.name,
    template,
    kernel,
    resources,
    checkpoint,
  };
}

/** The sandbox's size: what was asked, else the template's; within what this host has. */
function checkResources(request: SourceRequest, defaults: SandboxResources): SandboxResources {
  const resources: SandboxResources = {
    vcpus: request.vcpus ?? defaults.vcpus,
    memoryMiB: request.memoryMiB ?? defaults.memoryMiB,
    diskMiB: request.diskMiB ?? defaults.diskMiB,
  };
  const cores = availableParallelism();
  const hostMiB = Math.floor(totalmem() / 1024 / 1024);
  if (!Number.isInteger(resources.vcpus) || resources.vcpus < 1 || resources.vcpus > cores) {
    throw new SandboxSpecError(
      `vcpus must be a whole number from 1 to ${cores} (this host's cores), not ${resources.vcpus}`,
    );
  }
  if (!Number.isInteger(resources.memoryMiB) || resources.memoryMiB < 128 || resources.memoryMiB > hostMiB) {
    throw new SandboxSpecError(`memory must be from 128 to ${hostMiB} MiB, not ${resources.memoryMiB}`);
  }
  if (
    !Number.isInteger(resources.diskMiB) ||
    resources.diskMiB < defaults.diskMiB ||
    resources.diskMiB > 1_048_576
  ) {
    throw new SandboxSpecError(
      `disk must be from ${defaults.diskMiB} MiB (the template's size) to 1 TiB, not ${resources.diskMiB}`,
    );
  }
  return resources;
}
