import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCommand } from '@aiva/node';
import { LayoutWriter, pushImage, startRegistry, type TestRegistry, tarOf } from '@aiva/node/testkit';
import { Sandbox } from 'e2b';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';
import { until } from './helpers/until.js';

interface Env {
  name: string;
  state: string;
  sandboxID: string | null;
  volumeID: string;
  settings: Record<string, string>;
}

const creds = { username: 'deployer', password: 'registry-secret-42' };
const credFlags = ['--registry-username', creds.username, '--registry-password', creds.password];
/** What the image's CMD writes to the environment's volume, and says on its output. */
const IMAGE_CMD = [
  '/bin/sh',
  '-c',
  'echo from-image > /data/deployed; echo image-service-up; exec sleep 600',
];

let home = '';
let userHome = '';
let dir = '';
let up: RunningUp | undefined;
let registry: TestRegistry | undefined;
let appRef = '';
let bareRef = '';
const aiva = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  runCli(args, { env: { AIVA_HOME: home, HOME: userHome, ...env }, timeoutMs: 300_000 });

async function status(name: string): Promise<Env> {
  const r = await aiva(['status', name, '--format', 'json']);
  assert.equal(r.code, 0, explain(r));
  const [env] = JSON.parse(r.stdout) as Env[];
  assert.ok(env);
  return env;
}

async function templateNames(): Promise<string[]> {
  const r = await aiva(['template', 'ls', '--json']);
  assert.equal(r.code, 0, explain(r));
  return (JSON.parse(r.stdout) as { names: string[] }[]).flatMap((t) => t.names);
}

async function sandboxOf(env: Env): Promise<Sandbox> {
  assert.ok(env.sandboxID, `environment ${env.name} has no sandbox`);
  const { apiUrl, apiKey } = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
    apiUrl: string;
    apiKey: string;
  };
  return Sandbox.connect(env.sandboxID, { apiKey, apiUrl, sandboxUrl: apiUrl });
}

/** A busybox root file system: the smallest image a service runs in. */
async function busyboxRoot(root: string): Promise<void> {
  for (const d of ['bin', 'etc', 'tmp', 'root', 'home']) await mkdir(join(root, d), { recursive: true });
  await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
  await chmod(join(root, 'bin', 'busybox'), 0o755);
  const applets = (await runCommand('/bin/busybox', ['--list'])).stdout
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  for (const a of applets) await symlink('busybox', join(root, 'bin', a));
  await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  await writeFile(join(root, 'etc', 'group'), 'root:x:0:\n');
  await writeFile(join(root, 'etc', 'shadow'), 'root:*:19000:0:99999:7:::\n');
}

describe('aiva deploy <environment> <image>', { timeout: 15 * 60_000 }, () => {
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-deploy-image-'));
    registry = await startRegistry(join(dir, 'registry'), creds);
    const root = join(dir, 'rootfs');
    await busyboxRoot(root);
    const work = join(dir, 'work');
    await mkdir(work);
    const layout = new LayoutWriter(join(dir, 'layout'), work);
    const layer = await layout.layer(await tarOf(root, work), 'gzip');
    await layout.tag(await layout.image([layer], { Env: ['PATH=/bin'], Cmd: IMAGE_CMD }), 'app');
    await layout.tag(await layout.image([layer], { Env: ['PATH=/bin'] }), 'bare');
    appRef = `${registry.host}/aiva-tests/app:1`;
    bareRef = `${registry.host}/aiva-tests/bare:1`;
    await pushImage(join(dir, 'layout'), 'app', appRef, creds);
    await pushImage(join(dir, 'layout'), 'bare', bareRef, creds);
    // The app image alone, as an OCI layout directory and as a `docker save` archive.
    await runCommand('skopeo', [
      'copy',
      '--quiet',
      `oci:${join(dir, 'layout')}:app`,
      `oci:${join(dir, 'app-layout')}:app`,
    ]);
    await runCommand('skopeo', [
      'copy',
      '--quiet',
      `oci:${join(dir, 'layout')}:app`,
      `docker-archive:${join(dir, 'app.tar')}:aiva-tests/app:1`,
    ]);

    home = await tempHome();
    userHome = await mkdtemp(join(tmpdir(), 'aiva-user-'));
    up = await startUp(home);
    for (const args of [
      ['init', 'img'],
      ['start', 'img'],
      ['init', 'fresh'],
    ]) {
      const r = await aiva(args);
      assert.equal(r.code, 0, explain(r));
    }
  });
  after(async () => {
    for (const name of ['img', 'fresh']) await aiva(['rm', name, '--force']).catch(() => undefined);
    await up?.stop();
    await registry?.stop();
    await removeHome(home);
    await rm(userHome, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  it('builds a private registry image into env-<name> and runs its CMD as the service, the volume kept', async () => {
    const before = await status('img');
    let sbx = await sandboxOf(before);
    await sbx.commands.run('echo kept > /data/kept.txt', { user: 'root' });

    const r = await aiva(['deploy', 'img', appRef, ...credFlags, '--restart', 'always']);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stderr, new RegExp(`Building template env-img from ${appRef.replaceAll('.', '\\.')}`));
    assert.match(r.stderr, new RegExp(`FROM ${appRef.replaceAll('.', '\\.')}`));
    assert.match(r.stderr, /Template env-img \([a-z0-9]{20}\) ready in/);
    assert.match(
      r.stdout,
      /service: \/bin\/sh -c 'echo from-image > \/data\/deployed; .*' \(restart always\)/,
    );
    assert.doesNotMatch(`${r.stdout}${r.stderr}`, new RegExp(creds.password));

    const env = await status('img');
    assert.equal(env.settings.template, 'env-img');
    assert.equal(env.volumeID, before.volumeID);
    assert.notEqual(env.sandboxID, before.sandboxID, 'the environment is recreated from the image');
    sbx = await sandboxOf(env);
    const deployed = await until('the image’s CMD to write /data/deployed', async () => {
      const text = await sbx.files.read('/data/deployed', { user: 'root' });
      return text || undefined;
    });
    assert.equal(deployed, 'from-image\n');
    assert.equal(await sbx.files.read('/data/kept.txt', { user: 'root' }), 'kept\n');
    const logs = await until('the service’s output in aiva logs', async () => {
      const l = await aiva(['logs', 'img', '--tail', '20']);
      return /image-service-up/.test(l.stdout) ? l.stdout : undefined;
    });
    assert.doesNotMatch(logs, /FROM |Build finished|Template env-img/, 'the build is not in the service log');

    // --cmd instead of the image's own, with the credentials from the environment this time.
    const again = await aiva(
      ['deploy', 'img', appRef, '--cmd', 'echo by-flag > /data/flag; exec sleep 600'],
      {
        AIVA_REGISTRY_USERNAME: creds.username,
        AIVA_REGISTRY_PASSWORD: creds.password,
      },
    );
    assert.equal(again.code, 0, explain(again));
    const flagged = await status('img');
    assert.equal(flagged.settings.cmd, 'echo by-flag > /data/flag; exec sleep 600');
    const s2 = await sandboxOf(flagged);
    assert.equal(
      await until(
        '--cmd to run',
        async () => (await s2.files.read('/data/flag', { user: 'root' })) || undefined,
      ),
      'by-flag\n',
    );
  });

  it('refuses a wrong tag, wrong credentials, an image without a command and a missing environment, leaving everything as it was', async () => {
    const before = await status('img');
    const templatesBefore = await templateNames();
    assert.ok(templatesBefore.includes('env-img'));

    let r = await aiva(['deploy', 'img', `${registry?.host}/aiva-tests/app:nope`, ...credFlags]);
    assert.equal(r.code, 1, explain(r));
    assert.match(
      r.stderr,
      /no such image: the registry knows no such repository or tag \(skopeo: .*manifest unknown/i,
    );

    r = await aiva([
      'deploy',
      'fresh',
      appRef,
      '--registry-username',
      creds.username,
      '--registry-password',
      'wrong-pw',
    ]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /the registry refused the credentials/);
    assert.doesNotMatch(r.stderr, /wrong-pw/);

    r = await aiva(['deploy', 'fresh', bareRef, ...credFlags]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /has no ENTRYPOINT or CMD: give the command to run/);

    r = await aiva(['deploy', 'nosuch', appRef, ...credFlags]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /nosuch/);
    assert.doesNotMatch(r.stderr, /Building template/, 'the environment is checked before anything is built');

    r = await aiva(['deploy', 'fresh', appRef, '--registry-username', creds.username]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /need both a username and a password/);

    assert.deepEqual((await templateNames()).sort(), templatesBefore.sort(), 'no template is left or lost');
    const after = await status('img');
    assert.deepEqual(
      { sandboxID: after.sandboxID, settings: after.settings, state: after.state },
      { sandboxID: before.sandboxID, settings: before.settings, state: before.state },
    );
    assert.equal((await status('fresh')).state, 'stopped');
  });

  it('deploys an image archive (docker save) and an OCI layout directory given with --image', async () => {
    let r = await aiva(['deploy', 'fresh', join(dir, 'app.tar')]);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stderr, /uploading .*app\.tar/);
    assert.match(r.stderr, /Template env-fresh \([a-z0-9]{20}\) ready in/);
    let env = await status('fresh');
    assert.equal(env.state, 'running');
    assert.equal(env.settings.template, 'env-fresh');
    const sbx = await sandboxOf(env);
    assert.equal(
      await until(
        'the archive’s CMD to run',
        async () => (await sbx.files.read('/data/deployed', { user: 'root' })) || undefined,
      ),
      'from-image\n',
    );

    // Without --image a directory is one to install (fresh must run for that), with it an image.
    r = await aiva([
      'deploy',
      'fresh',
      join(dir, 'app-layout'),
      '--image',
      '--cmd',
      'echo from-layout > /data/layout; exec sleep 600',
    ]);
    assert.equal(r.code, 0, explain(r));
    env = await status('fresh');
    const s2 = await sandboxOf(env);
    assert.equal(
      await until(
        'the layout’s deploy to run',
        async () => (await s2.files.read('/data/layout', { user: 'root' })) || undefined,
      ),
      'from-layout\n',
    );
    r = await aiva(['deploy', 'fresh', join(dir, 'missing.tar')]);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /missing\.tar: no such file or directory/);

    r = await aiva(['rm', 'fresh', '--force']);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /environment fresh removed with its image's template env-fresh/);
    assert.ok(!(await templateNames()).includes('env-fresh'), 'the template of the image goes with it');
  });
});
