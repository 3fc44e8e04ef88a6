// Registry images and image archives into store layers, against real registries
// (Debian's docker-registry on 127.0.0.1, one with basic auth) serving images this
// file makes itself. Nothing leaves loopback. Starts no sandbox.
import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { parseReference } from '../src/image/oci-reference.js';
import { ImageStore, type OciImage, OciImageError, runCommand } from '../src/index.js';
import {
  type Descriptor,
  type Layer,
  LayoutWriter,
  pushImage as push,
  startRegistry,
  type TestRegistry,
  tarOf,
} from '../src/testkit.js';
import { entries, processesMentioning } from './helpers/leaks.js';
import { RecordingReporter } from './helpers/recipes.js';
import { envdDir, repoImages } from './helpers/repo.js';
import { tempDir } from './helpers/temp-dir.js';

const work = await tempDir('aiva-oci-');
const store = new ImageStore({ home: join(work, 'home'), recipesDir: repoImages, envdDir });
/** A second store, for imports that must unpack rather than find the pulled layers. */
const importStore = new ImageStore({ home: join(work, 'home-import'), recipesDir: repoImages, envdDir });
/** A store without the base layer, where a lying image would otherwise plant its own. */
const freshStore = new ImageStore({ home: join(work, 'home-fresh'), recipesDir: repoImages, envdDir });
const layout = join(work, 'layout');
const outside = join(work, 'outside');
const creds = { username: 'alice', password: 'correct horse' };

let open: TestRegistry;
let locked: TestRegistry;
const pushed: Record<string, Descriptor> = {};
let appLayers: Layer[] = [];

/** Writes `files` (path → content; a trailing `/` makes a directory) under a new directory `dir`. */
async function tree(dir: string, files: Record<string, string>): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [path, content] of Object.entries(files)) {
    if (path.endsWith('/')) await mkdir(join(dir, path), { recursive: true });
    else {
      await mkdir(join(dir, path, '..'), { recursive: true });
      await writeFile(join(dir, path), content);
    }
  }
  return dir;
}

/** A layer whose tar escapes its directory every way GNU tar's safeguards know of. */
async function hostileTar(): Promise<Buffer> {
  const h = join(work, 'hostile');
  const file = join(h, 'layer.tar');
  await mkdir(join(h, 'a'), { recursive: true });
  await symlink(outside, join(h, 'a', 'link'));
  await symlink('../../../../../../..', join(h, 'a', 'dots'));
  await runCommand('tar', ['-c', '-f', file, '-C', join(h, 'a'), 'link', 'dots']);
  await tree(join(h, 'b'), { 'link/pwned': 'via symlink\n', 'dots/pwned-dots': 'via ..\n' });
  await runCommand('tar', [
    '-r',
    '-f',
    file,
    '-C',
    join(h, 'b'),
    '--no-recursion',
    'link/pwned',
    'dots/pwned-dots',
  ]);
  await tree(join(h, 'c'), { 'sub/': '', escape: 'via ../\n' });
  await runCommand('tar', ['-r', '-f', file, '-P', '-C', join(h, 'c', 'sub'), '../escape']);
  await writeFile(join(outside, 'absolute'), 'via /\n');
  await runCommand('tar', ['-r', '-f', file, '-P', join(outside, 'absolute')]);
  await runCommand('rm', [join(outside, 'absolute')]);
  return readFile(file);
}

before(async () => {
  await mkdir(outside);
  const l = new LayoutWriter(layout, work);
  const base = await tree(join(work, 'base'), {
    'etc/os-release': 'ID=aiva-test\n',
    'hidden.txt': 'the top layer deletes me\n',
    'opq/lower.txt': 'the top layer makes my directory opaque\n',
    'keep/a': 'a\n',
    'secret/key': 'k\n',
  });
  await chown(join(base, 'secret'), 1234, 1234);
  await chown(join(base, 'secret', 'key'), 1234, 1234);
  await chmod(join(base, 'secret'), 0o700);
  await runCommand('setfattr', ['-n', 'user.aiva', '-v', 'kept', join(base, 'etc', 'os-release')]);
  const top = await tree(join(work, 'top'), {
    '.wh.hidden.txt': '',
    'opq/.wh..wh..opq': '',
    'opq/upper.txt': 'upper\n',
    'app/main.sh': '#!/bin/sh\necho hi\n',
  });
  await chmod(join(top, 'app', 'main.sh'), 0o755);
  const baseLayer = await l.layer(await tarOf(base, work), 'gzip');
  const topLayer = await l.layer(await tarOf(top, work), 'zstd');
  appLayers = [baseLayer, topLayer];
  const config = {
    Env: ['PATH=/usr/bin:/bin', 'GREETING=a=b'],
    WorkingDir: '/app',
    User: '1000:1000',
    Entrypoint: ['/bin/sh'],
    Cmd: ['/app/main.sh'],
  };
  pushed.app = await l.image(appLayers, config);
  await l.tag(pushed.app, 'app');
  const own = await l.layer(
    await tarOf(await tree(join(work, 'own'), { 'other/file': 'x\n' }), work),
    'gzip',
  );
  pushed.other = await l.image([baseLayer, own]);
  await l.tag(pushed.other, 'other');
  const archLayer = async (arch: string) =>
    l.layer(await tarOf(await tree(join(work, arch), { arch: `${arch}\n` }), work), 'gzip');
  const arm = await l.image([await archLayer('arm64')], {}, 'arm64');
  pushed.amd = await l.image([await archLayer('amd64')], {});
  await l.tag(await l.index([arm, pushed.amd]), 'multi');
  await l.tag(await l.index([arm]), 'armonly');
  pushed.hostile = await l.image([await l.layer(await hostileTar(), 'gzip')]);
  await l.tag(pushed.hostile, 'hostile');
  // Claims the base layer's diff_id for other content: must not become the base layer.
  const lie = await l.layer(
    await tarOf(await tree(join(work, 'lie'), { 'etc/os-release': 'ID=evil\n' }), work),
    'gzip',
  );
  await l.tag(await l.image([{ ...lie, diffId: baseLayer.diffId }]), 'liar');
  const odd = await l.layer(
    await tarOf(await tree(join(work, 'odd'), { odd: '?\n' }), work),
    'gzip',
    'application/vnd.example.thing',
  );
  await l.tag(await l.image([odd]), 'odd');

  open = await startRegistry(join(work, 'registry'));
  locked = await startRegistry(join(work, 'registry-auth'), creds);
  for (const name of ['app', 'other', 'multi', 'armonly', 'hostile', 'odd', 'liar']) {
    await push(layout, name, `${open.host}/test/${name}:v1`);
  }
  await push(layout, 'app', `${locked.host}/private/app:v1`, creds);
});

after(async () => {
  for (const r of [open, locked]) {
    await r?.stop();
    if (r) assert.throws(() => process.kill(r.pid, 0), /ESRCH/, `registry ${r.pid} is stopped`);
  }
});

afterEach(async () => {
  for (const s of [store, importStore, freshStore]) {
    assert.deepEqual(await entries(s.paths.tmp), [], 'no work directory (or auth file) is left');
    assert.deepEqual(await processesMentioning(s.paths.root), [], 'no skopeo or tar is left');
  }
});

/** How often the registry served the blob `digest`. */
async function fetches(registry: TestRegistry, digest: string): Promise<number> {
  return (await registry.log())
    .split('\n')
    .filter((l) => l.includes(`"GET /v2/`) && l.includes(`/blobs/${digest}`)).length;
}

/** `find` of the read-only overlay of `layers` (top first) and the content of `files` in it. */
async function merged(layers: string[], files: string[]): Promise<{ list: string; text: string }> {
  const mnt = join(work, `mnt-${Math.random().toString(16).slice(2)}`);
  await mkdir(mnt);
  const script =
    'set -e; mnt=$1; lower=$2; shift 2; mount -t overlay overlay -o "ro,lowerdir=$lower" "$mnt"; cd "$mnt"; ' +
    'find . -printf "%p %y %m %U:%G\\n" | sort; for f in "$@"; do echo "== $f"; cat "$f"; done';
  const { stdout } = await runCommand('unshare', [
    '--mount',
    '--propagation',
    'private',
    'sh',
    '-c',
    script,
    'sh',
    mnt,
    layers.map((h) => store.artefacts.layerRootfs(h)).join(':'),
    ...files,
  ]);
  const at = stdout.indexOf('== ');
  return { list: at < 0 ? stdout : stdout.slice(0, at), text: at < 0 ? '' : stdout.slice(at) };
}

async function rejectsWith(p: Promise<unknown>, reason: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof OciImageError, `an OciImageError, not ${e}`);
    assert.equal(e.reason, reason, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('registry images', () => {
  let app: OciImage;

  test('a pull unpacks each layer with whiteouts as overlayfs has them, and the config', async () => {
    const reporter = new RecordingReporter();
    app = await store.oci.pull(`${open.host}/test/app:v1`, { reporter });
    assert.equal(app.reference, `${open.host}/test/app:v1`);
    assert.equal(app.digest, pushed.app?.digest);
    assert.equal(app.layers.length, 2);
    assert.deepEqual(app.config, {
      env: { PATH: '/usr/bin:/bin', GREETING: 'a=b' },
      workdir: '/app',
      user: '1000:1000',
      entrypoint: ['/bin/sh'],
      cmd: ['/app/main.sh'],
    });
    assert.deepEqual(
      reporter.steps.map((s) => `${s.id} ${s.state}`),
      ['oci-pull running', 'oci running', 'oci running'],
    );
    assert.ok(
      reporter.lines.some((l) => l.includes('Copying blob')),
      'skopeo output is reported',
    );

    const [topHash, baseHash] = app.layers as [string, string];
    const whiteout = await lstat(join(store.artefacts.layerRootfs(topHash), 'hidden.txt'));
    assert.ok(whiteout.isCharacterDevice() && whiteout.rdev === 0, 'the whiteout is a 0/0 device');
    const opaque = await runCommand('getfattr', [
      '--only-values',
      '-n',
      'trusted.overlay.opaque',
      join(store.artefacts.layerRootfs(topHash), 'opq'),
    ]);
    assert.equal(opaque.stdout, 'y');
    assert.deepEqual(await entries(join(store.artefacts.layerRootfs(topHash), 'opq')), ['upper.txt']);
    const kept = await runCommand('getfattr', [
      '--only-values',
      '-n',
      'user.aiva',
      join(store.artefacts.layerRootfs(baseHash), 'etc', 'os-release'),
    ]);
    assert.equal(kept.stdout, 'kept');
    assert.equal((await store.artefacts.layer(topHash))?.role, 'oci');

    const view = await merged(app.layers, ['etc/os-release', 'opq/upper.txt']);
    assert.doesNotMatch(view.list, /hidden\.txt/, 'the whiteout hides the lower file');
    assert.doesNotMatch(view.list, /lower\.txt/, 'the opaque directory hides the lower one');
    assert.match(view.list, /^\.\/app\/main\.sh f 755 0:0$/m);
    assert.match(view.list, /^\.\/secret d 700 1234:1234$/m);
    assert.match(view.list, /^\.\/secret\/key f 644 1234:1234$/m);
    assert.match(view.list, /^\.\/keep\/a f 644 0:0$/m);
    assert.equal(view.text, '== etc/os-release\nID=aiva-test\n== opq/upper.txt\nupper\n');
    for (const l of appLayers) assert.equal(await fetches(open, l.descriptor.digest), 1);
  });

  test('a second pull fetches no layer and unpacks nothing; a sharing image unpacks only its own', async () => {
    const layersBefore = await entries(store.paths.layers);
    const reporter = new RecordingReporter();
    const again = await store.oci.pull(`${open.host}/test/app:v1`, { reporter });
    assert.deepEqual(again, app);
    assert.deepEqual(
      reporter.steps.filter((s) => s.id === 'oci').map((s) => s.state),
      ['cached', 'cached'],
    );
    assert.deepEqual(await entries(store.paths.layers), layersBefore);
    for (const l of appLayers)
      assert.equal(await fetches(open, l.descriptor.digest), 1, 'fetched once in all');

    const r2 = new RecordingReporter();
    const other = await store.oci.pull(`${open.host}/test/other:v1`, { reporter: r2 });
    assert.deepEqual(
      r2.steps.filter((s) => s.id === 'oci').map((s) => s.state),
      ['cached', 'running'],
    );
    assert.equal(other.layers[1], app.layers[1], 'the base layer is shared');
    assert.equal((await entries(store.paths.layers)).length, layersBefore.length + 1);
    assert.equal(await fetches(open, appLayers[0]?.descriptor.digest ?? ''), 1);
  });

  test('from an image index the linux/amd64 image is taken; an index without one is refused', async () => {
    const multi = await store.oci.pull(`${open.host}/test/multi:v1`);
    assert.equal(multi.digest, pushed.amd?.digest);
    const [layer] = multi.layers as [string];
    assert.equal(await readFile(join(store.artefacts.layerRootfs(layer), 'arch'), 'utf8'), 'amd64\n');
    await rejectsWith(
      store.oci.pull(`${open.host}/test/armonly:v1`),
      'platform',
      new RegExp(`${open.host}/test/armonly:v1.*linux/amd64`),
    );
  });

  test('basic auth: the right credentials pull, wrong or none are told apart', async () => {
    const ref = `${locked.host}/private/app:v1`;
    // While skopeo runs, the credentials are in a file only root can read, in a private directory.
    const modes: string[] = [];
    const reporter = new (class extends RecordingReporter {
      override step(id: string, title: string, state: 'running' | 'cached'): void {
        super.step(id, title, state);
        if (id !== 'oci-pull') return;
        for (const dir of readdirSync(store.paths.tmp)) {
          const tmp = join(store.paths.tmp, dir);
          modes.push(
            `${(statSync(tmp).mode & 0o777).toString(8)} ${(statSync(join(tmp, 'auth.json')).mode & 0o777).toString(8)}`,
          );
        }
      }
    })();
    const image = await store.oci.pull(ref, { credentials: creds, reporter });
    assert.deepEqual(modes, ['700 600']);
    assert.equal(image.digest, pushed.app?.digest);
    assert.deepEqual(image.layers, app.layers);
    await rejectsWith(
      store.oci.pull(ref, { credentials: { ...creds, password: 'wrong' } }),
      'unauthorized',
      new RegExp(`${ref}: the registry refused the credentials`),
    );
    await rejectsWith(
      store.oci.pull(ref),
      'unauthorized',
      new RegExp(`${ref}: the registry requires credentials`),
    );
  });

  test('unknown tags, unreachable registries, odd media types and bad references are clear errors', async () => {
    const layersBefore = await entries(store.paths.layers);
    await rejectsWith(
      store.oci.pull(`${open.host}/test/app:nope`),
      'not-found',
      /test\/app:nope: no such image/,
    );
    await rejectsWith(
      store.oci.pull(`${open.host}/test/nothing`),
      'not-found',
      /test\/nothing:latest: no such image/,
    );
    const closed = await startRegistry(join(work, 'closed'));
    await closed.stop();
    await rejectsWith(store.oci.pull(`${closed.host}/test/app:v1`), 'unreachable', /is unreachable/);
    await rejectsWith(
      store.oci.pull(`${open.host}/test/odd:v1`),
      'media-type',
      /test\/odd:v1: unsupported layer media type application\/vnd\.example\.thing/,
    );
    await rejectsWith(store.oci.pull('Bad/Ref'), 'reference', /"Bad\/Ref" is not an image reference/);
    assert.deepEqual(await entries(store.paths.layers), layersBefore);
  });

  test('a hostile layer cannot write outside its directory', async () => {
    const layersBefore = await entries(store.paths.layers);
    await rejectsWith(
      store.oci.pull(`${open.host}/test/hostile:v1`),
      'invalid',
      /cannot be unpacked: .*tar/s,
    );
    assert.deepEqual(await entries(outside), [], 'nothing was written outside');
    for (const escaped of [join(work, 'escape'), join(store.paths.tmp, 'escape')]) {
      await assert.rejects(stat(escaped), /ENOENT/);
    }
    assert.deepEqual(await entries(store.paths.layers), layersBefore, 'no layer was published');
  });
});

test('a layer whose content is not the diff_id its config claims is refused', async () => {
  await rejectsWith(
    freshStore.oci.pull(`${open.host}/test/liar:v1`),
    'invalid',
    new RegExp(`test/liar:v1: layer ${appLayers[0]?.diffId}.*the image config says`),
  );
  assert.deepEqual(await entries(freshStore.paths.layers), [], 'no layer was published');
});

describe('image archives', () => {
  test('a docker save archive and an OCI layout directory import like pulls', async () => {
    const archive = join(work, 'other.tar');
    await runCommand('skopeo', [
      'copy',
      '--quiet',
      `oci:${layout}:other`,
      `docker-archive:${archive}:test/other:v1`,
    ]);
    const reporter = new RecordingReporter();
    const fromArchive = await importStore.oci.import(archive, { reporter });
    assert.equal(fromArchive.reference, `docker-archive:${archive}`);
    assert.deepEqual(fromArchive.layers, (await store.oci.pull(`${open.host}/test/other:v1`)).layers);
    assert.deepEqual(
      reporter.steps.map((s) => `${s.id} ${s.state}`),
      ['oci-import running', 'oci running', 'oci running'],
    );
    const base = importStore.artefacts.layerRootfs(fromArchive.layers[1] ?? '');
    assert.equal(await readFile(join(base, 'etc', 'os-release'), 'utf8'), 'ID=aiva-test\n');

    const single = join(work, 'single');
    await runCommand('skopeo', ['copy', '--quiet', `oci:${layout}:app`, `oci:${single}:app`]);
    const r2 = new RecordingReporter();
    const fromDir = await importStore.oci.import(single, { reporter: r2 });
    assert.equal(fromDir.digest, pushed.app?.digest);
    assert.equal(fromDir.reference, `oci:${single}`);
    assert.deepEqual(
      r2.steps.filter((s) => s.id === 'oci').map((s) => s.state),
      ['cached', 'running'],
    );
    assert.equal(fromDir.config.workdir, '/app');

    await rejectsWith(importStore.oci.import(join(work, 'nowhere')), 'reference', /no such file/);
    await rejectsWith(
      importStore.oci.import(join(base, 'etc', 'os-release')),
      'reference',
      /not a tar archive/,
    );
  });
});

describe('interruptions', () => {
  for (const when of ['oci-pull', 'oci']) {
    test(`an abort while ${when === 'oci' ? 'a layer is unpacked' : 'skopeo copies'} leaves nothing`, async () => {
      const layersBefore = await entries(importStore.paths.layers);
      const controller = new AbortController();
      const reporter = new (class extends RecordingReporter {
        override step(id: string, title: string, state: 'running' | 'cached'): void {
          super.step(id, title, state);
          if (id === when) controller.abort();
        }
      })();
      await rejectsWith(
        importStore.oci.pull(`${open.host}/test/multi:v1`, { reporter, signal: controller.signal }),
        'interrupted',
        /test\/multi:v1: .*interrupted/,
      );
      assert.deepEqual(await entries(importStore.paths.layers), layersBefore, 'no layer was published');
    });
  }
});

test('references are read as Docker reads them', () => {
  const names = (r: string) => {
    const p = parseReference(r);
    return `${p.name} ${p.insecure ? 'http' : 'https'}`;
  };
  assert.equal(names('debian:stable'), 'docker.io/library/debian:stable https');
  assert.equal(names('index.docker.io/user/repo'), 'docker.io/user/repo:latest https');
  assert.equal(names('ghcr.io/o/r/x:1.0'), 'ghcr.io/o/r/x:1.0 https');
  assert.equal(names('localhost/app'), 'localhost/app:latest http');
  assert.equal(names('localhost:5000/app:t'), 'localhost:5000/app:t http');
  assert.equal(names('127.9.8.7:80/a/b:t'), '127.9.8.7:80/a/b:t http');
  assert.equal(names('128.0.0.1:80/a'), '128.0.0.1:80/a:latest https');
  assert.equal(names('127.0.0.1.example.com/a'), '127.0.0.1.example.com/a:latest https');
  const digest = `sha256:${'a'.repeat(64)}`;
  assert.equal(names(`busybox:1@${digest}`), `docker.io/library/busybox@${digest} https`);
  for (const bad of ['', 'UPPER/case', 'a//b', 'x:bad tag', `x@sha256:${'z'.repeat(64)}`, '-v', 'a/b:']) {
    assert.throws(() => parseReference(bad), OciImageError, bad);
  }
});
