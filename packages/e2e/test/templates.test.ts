// Template builds through the real e2b SDK (`Template()`, `Template.build`, tags,
// `exists`) against `aiva up` on containers: steps in build sandboxes, cached layers,
// start and ready commands, failures that leave nothing behind.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { runCommand } from '@aiva/node';
import { LayoutWriter, pushImage, startRegistry, type TestRegistry, tarOf } from '@aiva/node/testkit';
import { BuildError, type LogEntry, Sandbox, Template, waitForPort } from 'e2b';
import { aivaUpForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();
const aivaCli = fileURLToPath(import.meta.resolve('@aiva/cli/aiva'));

/** Runs the built `aiva` CLI against the server, as a user would (E2B_API_URL/E2B_API_KEY). */
async function aiva(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env = {
    ...process.env,
    E2B_API_URL: server.up.url,
    E2B_API_KEY: server.up.apiKey,
    AIVA_HOME: server.up.home,
  };
  try {
    const r = await promisify(execFile)(process.execPath, [aivaCli, ...args], { env });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}
let context: string;

before(async () => {
  context = await mkdtemp(join(tmpdir(), 'aiva-template-ctx-'));
  await mkdir(join(context, 'app', 'sub'), { recursive: true });
  await writeFile(join(context, 'app', 'hello.txt'), 'hello from the build context\n');
  await writeFile(join(context, 'app', 'sub', 'deep.txt'), 'deep\n');
  await writeFile(join(context, 'notes.md'), '# notes\n');
});
after(() => rm(context, { recursive: true, force: true }));

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.up.url}${path}`, {
    method,
    headers: { 'x-api-key': server.up.apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
}

/** The web app template: each step of the SDK's builder, a start command and its ready check. */
function webApp(lastStep = 'echo v1 > /home/user/version.txt') {
  return Template({ fileContextPath: context })
    .fromTemplate('base')
    .setEnvs({ GREETING: 'hi', TARGET: '$GREETING there' })
    .runCmd('echo "$TARGET from $(whoami)" > /home/user/greet.txt')
    .copy('app', '/home/user/app')
    .copy('notes.md', '/opt/docs/', { mode: 0o600 })
    .setWorkdir('/home/user/app')
    .runCmd('ls -R > /home/user/listing.txt')
    .runCmd(lastStep)
    .setStartCmd('python3 -m http.server 8080', waitForPort(8080));
}

const layersDir = () => join(server.up.home, 'images', 'layers');
const stepLayers = async () => (await readdir(layersDir())).length;

/** The layers made for `template`'s build steps (their record names `<template> step <n>`). */
async function layersOf(template: string): Promise<string[]> {
  const out: string[] = [];
  for (const h of await readdir(layersDir())) {
    const record = await readFile(join(layersDir(), h, 'layer.json'), 'utf8').catch(() => '{}');
    if (((JSON.parse(record) as { template?: string }).template ?? '').startsWith(`${template} step `))
      out.push(h);
  }
  return out;
}

/** The layers of aiva's own templates and of envd (`debian`, `guest`): no template build may remove them. */
async function ownLayers(): Promise<string[]> {
  const out: string[] = [];
  for (const h of await readdir(layersDir())) {
    const record = await readFile(join(layersDir(), h, 'layer.json'), 'utf8').catch(() => '{}');
    if (['debian', 'guest'].includes((JSON.parse(record) as { role?: string }).role ?? '')) out.push(h);
  }
  return out.sort();
}

describe('template builds (containers)', () => {
  test('a template built with the SDK starts with its files, user, workdir and running start command', async () => {
    const logs: LogEntry[] = [];
    const built = await Template.build(webApp(), 'web-app', {
      onBuildLogs: (l) => logs.push(l),
      cpuCount: 1,
      memoryMB: 512,
    });
    assert.equal(built.name, 'web-app');
    assert.match(built.templateId, /^[a-z0-9]{20}$/);
    const text = logs.map((l) => l.message).join('\n');
    assert.match(text, /\[2\/7\] RUN echo "\$TARGET/);
    assert.match(text, /COPY app \/home\/user\/app/);
    assert.ok(await Template.exists('web-app'));
    assert.equal(await Template.exists('no-such-template'), false);

    const sbx = await Sandbox.create('web-app');
    try {
      assert.equal(await sbx.files.read('/home/user/greet.txt'), 'hi there from user\n');
      assert.equal(await sbx.files.read('/home/user/app/hello.txt'), 'hello from the build context\n');
      assert.equal(await sbx.files.read('/home/user/app/sub/deep.txt'), 'deep\n');
      const docs = await sbx.commands.run('stat -c "%a %U" /opt/docs/notes.md');
      assert.equal(docs.stdout.trim(), '600 user');
      const who = await sbx.commands.run('echo "$(whoami) $(pwd)"');
      assert.equal(who.stdout.trim(), 'user /home/user/app');
      // The start command serves the workdir, already listening when the create returned.
      const page = await sbx.commands.run('curl -s http://127.0.0.1:8080/hello.txt');
      assert.equal(page.stdout, 'hello from the build context\n');
      // ENV is the build's, not the sandbox's (as on E2B).
      const env = await sbx.commands.run('echo "[$GREETING]"');
      assert.equal(env.stdout.trim(), '[]');
      const listed = (await Sandbox.list().nextItems()).find((s) => s.sandboxId === sbx.sandboxId);
      assert.equal(listed?.templateId, built.templateId);
    } finally {
      await sbx.kill();
    }
  });

  test('a rebuild with only the last step changed runs only that step', async () => {
    const before = await stepLayers();
    const logs: LogEntry[] = [];
    await Template.build(webApp('echo v2 > /home/user/version.txt'), 'web-app', {
      onBuildLogs: (l) => logs.push(l),
    });
    const cached = logs.filter((l) => /^\[(base|\d+\/\d+)\] CACHED /.test(l.message)).map((l) => l.message);
    // The default user phase, ENV, RUN, COPY, COPY, WORKDIR, RUN: all but the last RUN.
    assert.equal(cached.length, 7, logs.map((l) => l.message).join('\n'));
    assert.equal(await stepLayers(), before + 1, 'one new layer: the changed step’s');
    const sbx = await Sandbox.create('web-app');
    try {
      assert.equal(await sbx.files.read('/home/user/version.txt'), 'v2\n');
    } finally {
      await sbx.kill();
    }
    // skipCache runs every step again, into layers of its own.
    const forced: LogEntry[] = [];
    const layersBefore = await stepLayers();
    await Template.build(webApp('echo v2 > /home/user/version.txt'), 'web-app', {
      skipCache: true,
      onBuildLogs: (l) => forced.push(l),
    });
    assert.equal(forced.filter((l) => / CACHED /.test(l.message)).length, 0);
    assert.ok((await stepLayers()) >= layersBefore + 6, 'every step that changes files made a new layer');
  });

  test('tags name builds; a create can ask for one', async () => {
    const built = await Template.build(webApp('echo tagged > /home/user/version.txt'), 'web-app:v3');
    assert.deepEqual(built.tags, ['v3']);
    await Template.assignTags('web-app:v3', ['prod']);
    const tags = (await Template.getTags('web-app')).map((t) => t.tag).sort();
    assert.deepEqual(tags, ['default', 'prod', 'v3']);
    const sbx = await Sandbox.create('web-app:prod');
    try {
      assert.equal(await sbx.files.read('/home/user/version.txt'), 'tagged\n');
    } finally {
      await sbx.kill();
    }
    await Template.removeTags('web-app', 'prod');
    await assert.rejects(Sandbox.create('web-app:prod'), /tag 'prod' does not exist/);
  });

  test('a failing step ends the build with its number, command and output, and keeps nothing', async () => {
    // A step of its own (the store is shared between runs): its layer is this build's.
    const token = Math.random().toString(36).slice(2);
    const before = new Set(await layersOf('broken-app'));
    const broken = Template()
      .fromTemplate('base')
      .runCmd(`echo ${token} > /home/user/fine.txt`)
      .runCmd('echo "it broke" >&2; exit 3');
    await assert.rejects(Template.build(broken, 'broken-app'), (e: unknown) => {
      assert.ok(e instanceof BuildError, String(e));
      assert.match(e.message, /failed to run command 'echo "it broke" >&2; exit 3': exit status 3/);
      assert.match(e.message, /it broke/);
      return true;
    });
    // The step before the failure is a cached layer; the failed one left none, and no work in progress.
    const made = (await layersOf('broken-app')).filter((h) => !before.has(h));
    assert.equal(made.length, 1);
    const tmp = await readdir(join(server.up.home, 'images', 'tmp'));
    assert.deepEqual(
      tmp.filter((n) => n.startsWith('layer-')),
      [],
    );
    await assert.rejects(Sandbox.create('broken-app'), /has no ready build/);
    const status = await api('DELETE', '/templates/broken-app');
    assert.equal(status.status, 204);
    assert.deepEqual(
      (await layersOf('broken-app')).filter((h) => made.includes(h)),
      [],
      'the failed build’s layers went with the template',
    );
  });

  test('a step that fills the build sandbox’s disk fails with ENOSPC inside it, not on the host', async () => {
    const full = Template()
      .fromTemplate('base')
      // More than the template's 4 GiB disk, allocated at once (nothing written on the host).
      .runCmd(`fallocate -l 5G /home/user/big-${Math.random().toString(36).slice(2)}`);
    await assert.rejects(Template.build(full, 'full-disk-app'), (e: unknown) => {
      assert.ok(e instanceof BuildError, String(e));
      assert.match(e.message, /No space left on device/);
      return true;
    });
    assert.equal((await api('DELETE', '/templates/full-disk-app')).status, 204);
  });

  test('a second build of a template while one runs is refused (409), and the first goes on', async () => {
    const slow = Template()
      .fromTemplate('base')
      .runCmd(`sleep 4 && echo ${Date.now()} > /home/user/slow.txt`);
    const build = await Template.buildInBackground(slow, 'slow-app');
    let status = await Template.getBuildStatus(build);
    for (let i = 0; i < 100 && status.status === 'waiting'; i++)
      status = await Template.getBuildStatus(build);
    assert.equal(status.status, 'building');
    const second = await api('POST', '/v3/templates', { name: 'slow-app' });
    assert.equal(second.status, 409);
    assert.match(String(second.body.message), /slow-app is being built already/);
    for (let i = 0; i < 600 && status.status === 'building'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      status = await Template.getBuildStatus(build);
    }
    assert.equal(status.status, 'ready');
    assert.equal((await api('DELETE', '/templates/slow-app')).status, 204);
  });

  test('templates are their team’s; names are unique per team; a public one is every team’s', async () => {
    const made = async (name: string) =>
      String(((await api('POST', '/v1/teams', { name })).body as { key: string }).key);
    const other = { apiKey: await made('template-other') };
    const third = { apiKey: await made('template-third') };
    const mine = await Template.build(
      Template().fromTemplate('base').runCmd('echo shared > /home/user/shared.txt'),
      'team-only',
    );
    // Another team sees neither the template nor its builds (E2B answers its alias with a
    // 403, which the SDK counts as "exists").
    await assert.rejects(Sandbox.create('team-only', other), /does not exist/);
    const listed = await fetch(`${server.up.url}/templates`, { headers: { 'x-api-key': other.apiKey } });
    assert.ok(
      !((await listed.json()) as { templateID: string }[]).some((t) => t.templateID === mine.templateId),
    );
    // It may have a template of the same name: its own.
    const theirs = await Template.build(
      Template().fromTemplate('base').runCmd('echo theirs > /home/user/shared.txt'),
      'team-only',
      other,
    );
    assert.notEqual(theirs.templateId, mine.templateId);

    const published = await api('PATCH', `/v2/templates/${mine.templateId}`, { public: true });
    assert.deepEqual(published.body, { names: ['team-only'] });
    const sbx = await Sandbox.create('team-only', third);
    try {
      assert.equal(await sbx.files.read('/home/user/shared.txt'), 'shared\n');
    } finally {
      await sbx.kill();
    }
    // A team's own name comes first.
    const own = await Sandbox.create('team-only', other);
    try {
      assert.equal(await own.files.read('/home/user/shared.txt'), 'theirs\n');
    } finally {
      await own.kill();
    }
    // Only the owner deletes it.
    const refused = await fetch(`${server.up.url}/templates/${mine.templateId}`, {
      method: 'DELETE',
      headers: { 'x-api-key': third.apiKey },
    });
    assert.equal(refused.status, 404);
    assert.equal((await api('DELETE', `/templates/${mine.templateId}`)).status, 204);
    const gone = await fetch(`${server.up.url}/templates/team-only`, {
      method: 'DELETE',
      headers: { 'x-api-key': other.apiKey },
    });
    assert.equal(gone.status, 204);
  });

  test('bad requests get clear errors', async () => {
    const req = await api('POST', '/v3/templates', { name: 'bad-steps' });
    assert.equal(req.status, 202);
    const { templateID, buildID } = req.body as { templateID: string; buildID: string };
    const bad = await api('POST', `/v2/templates/${templateID}/builds/${buildID}`, {
      fromTemplate: 'base',
      steps: [{ type: 'HEALTHCHECK', args: ['true'] }],
    });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.message), /HEALTHCHECK is not supported/);
    const both = await api('POST', `/v2/templates/${templateID}/builds/${buildID}`, {
      fromTemplate: 'base',
      fromImage: 'x',
    });
    assert.match(String(both.body.message), /cannot specify both/);
    const own = await api('POST', '/v3/templates', { name: 'base' });
    assert.equal(own.status, 409);
    const upload = await api('GET', `/templates/${templateID}/files/nothex`);
    assert.equal(upload.status, 400);
    assert.equal((await api('DELETE', `/templates/${templateID}`)).status, 204);
  });

  test('aiva template build | ls | logs | rm: a Dockerfile through the CLI', async () => {
    await writeFile(
      join(context, 'Dockerfile'),
      'FROM e2bdev/base\nENV WHO=dockerfile\nRUN echo "from $WHO" > /tmp/x && mkdir -p /srv && cp /tmp/x /srv/who.txt\nCOPY notes.md /srv/\n',
    );
    const built = await aiva(
      'template',
      'build',
      context,
      '--name',
      'cli-app',
      '--cpu',
      '1',
      '--memory',
      '512',
    );
    assert.equal(built.code, 0, built.stderr);
    assert.match(built.stderr, /\[\d+\/\d+\] RUN echo "from \$WHO"/);
    assert.match(built.stderr, /Template cli-app \([a-z0-9]{20}\) ready in/);
    const id = built.stdout.trim();
    const ls = await aiva('template', 'ls', '--json');
    const row = (
      JSON.parse(ls.stdout) as { templateID: string; names: string[]; buildStatus: string }[]
    ).find((r) => r.templateID === id);
    assert.deepEqual(row?.names, ['cli-app']);
    assert.equal(row?.buildStatus, 'ready');
    const table = await aiva('template', 'ls');
    assert.match(table.stdout, /^NAME\s+ID\s+STATUS/);
    assert.match(table.stdout, /cli-app\s+[a-z0-9]{20}\s+ready/);
    const sbx = await Sandbox.create('cli-app');
    try {
      assert.equal(await sbx.files.read('/srv/who.txt'), 'from dockerfile\n');
      assert.equal(await sbx.files.read('/srv/notes.md'), '# notes\n');
      // The Dockerfile had no USER or WORKDIR: the SDK's parser ends as user in /home/user.
      assert.equal((await sbx.commands.run('echo "$(whoami) $(pwd)"')).stdout.trim(), 'user /home/user');
    } finally {
      await sbx.kill();
    }
    const logs = await aiva('template', 'logs', 'cli-app');
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout, /COPY notes\.md \/srv\//);
    assert.match(logs.stderr, /: ready/);
    const bad = await aiva('template', 'build', context, '--name', 'Bad Name!');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /template name "bad name!" is not/);
    const rm = await aiva('template', 'rm', 'cli-app');
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(await Template.exists('cli-app'), false);
    const again = await aiva('template', 'rm', 'cli-app');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not found/);
  });

  test('a template sandboxes run from cannot be deleted; once they end, it and its layers go', async () => {
    const sbx = await Sandbox.create('web-app');
    const refused = await api('DELETE', '/templates/web-app');
    assert.equal(refused.status, 400);
    assert.match(String(refused.body.message), /used by 1 running or paused sandbox/);
    await sbx.kill();
    const before = await stepLayers();
    const own = await ownLayers();
    assert.ok(own.length >= 2);
    assert.equal((await api('DELETE', '/templates/web-app')).status, 204);
    assert.equal(await Template.exists('web-app'), false);
    assert.ok((await stepLayers()) < before, 'its step layers were removed');
    assert.deepEqual(await ownLayers(), own, 'the base template’s and envd’s layers stay');
  });
});

describe('templates from registry images', () => {
  const creds = { username: 'builder', password: 'registry-secret' };
  let registry: TestRegistry;
  let dir: string;
  let ref: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'aiva-image-'));
    registry = await startRegistry(join(dir, 'registry'), creds);
    // A tiny image of its own: busybox and its applets, root in /etc/passwd, no bash, no
    // node, no tini. envd runs in it from the guest layer alone.
    const root = join(dir, 'rootfs');
    for (const d of ['bin', 'etc', 'srv', 'tmp', 'root', 'home'])
      await mkdir(join(root, d), { recursive: true });
    await copyFile('/bin/busybox', join(root, 'bin', 'busybox'));
    await chmod(join(root, 'bin', 'busybox'), 0o755);
    const applets = (await runCommand('/bin/busybox', ['--list'])).stdout
      .split('\n')
      .filter((a) => a && a !== 'busybox');
    for (const a of applets) await symlink('busybox', join(root, 'bin', a));
    await writeFile(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    await writeFile(join(root, 'etc', 'group'), 'root:x:0:\n');
    await writeFile(join(root, 'etc', 'shadow'), 'root:*:19000:0:99999:7:::\n');
    await writeFile(join(root, 'srv', 'hello.txt'), 'hello from the image\n');
    const work = join(dir, 'work');
    await mkdir(work);
    const layout = new LayoutWriter(join(dir, 'layout'), work);
    const layer = await layout.layer(await tarOf(root, work), 'gzip');
    const image = await layout.image([layer], {
      Env: ['PATH=/bin', 'IMAGE_VAR=from-image'],
      WorkingDir: '/srv',
    });
    await layout.tag(image, 'tiny');
    ref = `${registry.host}/aiva-tests/tiny:1`;
    await pushImage(join(dir, 'layout'), 'tiny', ref, creds);
  });
  after(async () => {
    await registry?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('a template from a private registry image, without bash or node, runs envd and the SDK', async () => {
    const logs: LogEntry[] = [];
    const app = Template({ fileContextPath: context })
      .fromImage(ref, creds)
      .runCmd('echo "built with $IMAGE_VAR as $(whoami)" > /home/user/built.txt')
      .copy('notes.md', '/home/user/');
    await Template.build(app, 'tiny-app', { onBuildLogs: (l) => logs.push(l), cpuCount: 1, memoryMB: 256 });
    assert.match(logs.map((l) => l.message).join('\n'), new RegExp(`FROM ${ref.replaceAll('.', '\\.')}`));
    const sbx = await Sandbox.create('tiny-app');
    try {
      assert.equal(await sbx.files.read('/home/user/built.txt'), 'built with from-image as user\n');
      assert.equal(await sbx.files.read('/home/user/notes.md'), '# notes\n');
      const r = await sbx.commands.run(
        'echo "$(whoami) $(pwd)"; cat /srv/hello.txt; test -e /bin/bash || echo no-bash',
      );
      assert.equal(r.stdout, 'user /home/user\nhello from the image\nno-bash\n');
    } finally {
      await sbx.kill();
    }
    assert.equal((await api('DELETE', '/templates/tiny-app')).status, 204);
  });

  test('aiva template import: a docker save archive and an OCI layout directory become templates', async () => {
    const archive = join(dir, 'tiny.tar');
    await runCommand('skopeo', [
      'copy',
      '--quiet',
      `oci:${join(dir, 'layout')}:tiny`,
      `docker-archive:${archive}:aiva-tests/tiny:1`,
    ]);
    for (const [source, name] of [
      [archive, 'imported-archive'],
      [join(dir, 'layout'), 'imported-layout'],
    ] as const) {
      const r = await aiva('template', 'import', source, '--name', name, '--cpu', '1', '--memory', '256');
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`Template ${name} \\([a-z0-9]{20}\\) ready in`));
      const sbx = await Sandbox.create(name);
      try {
        const out = await sbx.commands.run('cat /srv/hello.txt; whoami');
        assert.equal(out.stdout, 'hello from the image\nuser\n');
      } finally {
        await sbx.kill();
      }
      assert.equal((await api('DELETE', `/templates/${name}`)).status, 204);
    }
    const missing = await aiva('template', 'import', join(dir, 'nope.tar'), '--name', 'nope');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /nope\.tar: no such file or directory/);
    const notImage = await aiva(
      'template',
      'import',
      join(dir, 'registry', 'config.yml'),
      '--name',
      'not-an-image',
    );
    assert.equal(notImage.code, 1);
    assert.match(notImage.stderr, /not a tar archive/);
    await api('DELETE', '/templates/not-an-image');
  });

  test('wrong credentials and unknown images end the build with the registry’s reason', async () => {
    await assert.rejects(
      Template.build(Template().fromImage(ref, { username: 'builder', password: 'wrong' }), 'tiny-bad-auth'),
      (e: unknown) => e instanceof BuildError && /credentials/i.test(e.message),
    );
    await assert.rejects(
      Template.build(Template().fromImage(`${registry.host}/aiva-tests/tiny:nope`, creds), 'tiny-bad-tag'),
      (e: unknown) => e instanceof BuildError && /not found|unknown|does not exist/i.test(e.message),
    );
    for (const t of ['tiny-bad-auth', 'tiny-bad-tag'])
      assert.equal((await api('DELETE', `/templates/${t}`)).status, 204);
  });
});
