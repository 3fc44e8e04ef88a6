import { stat } from 'node:fs/promises';
import type { EnvironmentView } from '@aiva/server';
import { ApiError, apiTarget, callApi } from '../api-client.js';
import { followBuild, uploadImageArchive } from './template-import.js';

/** What `aiva deploy <name> <source>` was given. */
export type DeploySource =
  | { kind: 'directory'; path: string }
  | { kind: 'archive'; path: string }
  | { kind: 'registry'; reference: string }
  | { kind: 'template'; name: string };

/** Paths that name a file (`./app.tar`, `/x`, `~/x`, `*.tar`), even one that is not there. */
const PATH_LIKE = /^(\.{1,2}\/|\/|~\/)|\.(tar|tar\.gz|tgz)$/;

/**
 * What `source` is: a directory to install (one with `--image` is an OCI layout), an
 * image archive (any other file), a registry image (a reference with a registry host,
 * a path, a tag or a digest) or a template (a plain name, or `name:tag` of a template
 * the team has).
 */
export async function classifyDeploySource(source: string, image: boolean): Promise<DeploySource> {
  const st = await stat(source).catch(() => undefined);
  if (st?.isDirectory() && !image) return { kind: 'directory', path: source };
  if (st) return { kind: 'archive', path: source };
  if (PATH_LIKE.test(source)) throw new Error(`${source}: no such file or directory`);
  if (image || /[/@]/.test(source)) return { kind: 'registry', reference: source };
  if (source.includes(':')) {
    const name = source.slice(0, source.indexOf(':'));
    const known = await callApi('GET', `/templates/${encodeURIComponent(name)}`).then(
      () => true,
      () => false,
    );
    if (!known) return { kind: 'registry', reference: source };
  }
  return { kind: 'template', name: source };
}

/** Registry credentials from the flags, else AIVA_REGISTRY_USERNAME and AIVA_REGISTRY_PASSWORD. */
export function registryCredentials(o: {
  registryUsername?: string;
  registryPassword?: string;
}): { username: string; password: string } | undefined {
  const username = o.registryUsername ?? process.env.AIVA_REGISTRY_USERNAME;
  const password = o.registryPassword ?? process.env.AIVA_REGISTRY_PASSWORD;
  if (!username && !password) return undefined;
  if (!username || !password)
    throw new Error(
      'registry credentials need both a username and a password (--registry-username and --registry-password, or AIVA_REGISTRY_USERNAME and AIVA_REGISTRY_PASSWORD)',
    );
  return { username, password };
}

/** The template an environment's image is built into (rebuilt by each deploy of an image). */
export const environmentTemplate = (name: string) => `env-${name}`;

/**
 * `aiva deploy <name> <image>`: the image (a registry reference, or an archive or OCI
 * layout uploaded as build files) becomes the template `env-<name>` through E2B's build
 * API, its log printed as it goes, and the environment is recreated from that template
 * (its volume kept) with the service running `cmd`, else the image's ENTRYPOINT and CMD.
 * The environment is checked before anything is built; a failed build changes nothing
 * and leaves no template that was not there before.
 */
export async function deployImage(
  name: string,
  source: Extract<DeploySource, { kind: 'archive' | 'registry' }>,
  o: { cmd?: string; restart?: string; credentials?: { username: string; password: string } },
  print: (line: string) => void,
): Promise<EnvironmentView> {
  await callApi<EnvironmentView>('GET', `/v1/environments/${encodeURIComponent(name)}`);
  const template = environmentTemplate(name);
  const existed = await callApi('GET', `/templates/${encodeURIComponent(template)}`).then(
    () => true,
    (e: unknown) => {
      if (e instanceof ApiError && e.status === 404) return false;
      throw e;
    },
  );
  const what = source.kind === 'registry' ? source.reference : source.path;
  const { apiUrl } = await apiTarget();
  const started = performance.now();
  print(`Building template ${template} from ${what} on ${apiUrl}`);
  const { templateID, buildID } = await callApi<{ templateID: string; buildID: string }>(
    'POST',
    '/v3/templates',
    { name: template },
  );
  try {
    const from =
      source.kind === 'archive'
        ? { fromArchive: await uploadImageArchive(source.path, templateID, print) }
        : {
            fromImage: source.reference,
            ...(o.credentials ? { fromImageRegistry: { type: 'registry', ...o.credentials } } : {}),
          };
    await callApi('POST', `/v2/templates/${templateID}/builds/${buildID}`, {
      ...from,
      steps: [],
      ...(o.cmd ? {} : { requireCommand: true }),
    });
    await followBuild(templateID, buildID, template, print);
  } catch (e) {
    if (!existed) await callApi('DELETE', `/templates/${templateID}`).catch(() => {});
    throw new Error(`building ${what}: ${(e as Error).message}`);
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  print(`Template ${template} (${templateID}) ready in ${seconds} s`);
  return callApi<EnvironmentView>('POST', `/v1/environments/${encodeURIComponent(name)}/deploy`, {
    template,
    ...(o.cmd ? { cmd: o.cmd } : { imageCommand: true }),
    ...(o.restart ? { restart: o.restart } : {}),
  });
}
