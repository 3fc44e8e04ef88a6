import { InvalidArgumentError, NotFoundError, Sandbox, type SandboxInfo } from 'e2b';
import { apiTarget } from './api-client.js';

/** The metadata key that names an environment: `aiva init N` makes a sandbox with it. */
export const ENVIRONMENT_KEY = 'aiva.environment';

const SANDBOX_ID = /^[a-z0-9]{1,64}$/;

/** The e2b SDK's options for the running `aiva up` (the sandbox traffic goes through its proxy). */
export async function sdkOptions(): Promise<{ apiUrl: string; apiKey: string; sandboxUrl: string }> {
  const { apiUrl, apiKey } = await apiTarget();
  return { apiUrl, apiKey, sandboxUrl: process.env.E2B_SANDBOX_URL ?? apiUrl };
}

/**
 * The sandbox `nameOrId` means: the caller's environment of that name (its sandbox, running
 * or paused), else the sandbox with that id. A paused one is refused, not resumed: starting
 * an environment is `aiva start`'s to do.
 */
export async function findEnvironment(nameOrId: string): Promise<{ info: SandboxInfo; label: string }> {
  if (nameOrId === '') throw new Error('no environment name or sandbox id given');
  const opts = await sdkOptions();
  const paginator = Sandbox.list({
    ...opts,
    query: { metadata: { [ENVIRONMENT_KEY]: nameOrId }, state: ['running', 'paused'] },
  });
  const named: SandboxInfo[] = [];
  while (paginator.hasNext) named.push(...(await paginator.nextItems()));
  let info: SandboxInfo | undefined;
  if (named.length > 1) {
    const running = named.filter((s) => s.state === 'running');
    if (running.length !== 1)
      throw new Error(
        `${named.length} sandboxes say they are environment ${nameOrId} (${named.map((s) => s.sandboxId).join(', ')}): give a sandbox id`,
      );
    info = running[0];
  } else info = named[0];
  // Only what can be a sandbox id (the server's pattern for one) is asked for as one.
  if (!info && SANDBOX_ID.test(nameOrId)) {
    info = await Sandbox.getInfo(nameOrId, opts).catch((e: unknown) => {
      if (e instanceof NotFoundError || e instanceof InvalidArgumentError) return undefined;
      throw e;
    });
  }
  if (!info) throw new Error(`no environment or sandbox ${nameOrId} (aiva status lists environments)`);
  const name = info.metadata[ENVIRONMENT_KEY];
  const label = name ? `environment ${name}` : `sandbox ${info.sandboxId}`;
  if (info.state !== 'running')
    throw new Error(
      name
        ? `environment ${name} is stopped; aiva start ${name}`
        : `sandbox ${info.sandboxId} is ${info.state}; resume it first (Sandbox.connect)`,
    );
  return { info, label };
}

/** Connects to the running sandbox `nameOrId` means (see `findEnvironment`). */
export async function connectEnvironment(nameOrId: string): Promise<{ sandbox: Sandbox; label: string }> {
  const { info, label } = await findEnvironment(nameOrId);
  return { sandbox: await Sandbox.connect(info.sandboxId, await sdkOptions()), label };
}
