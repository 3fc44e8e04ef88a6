// The e2b SDK's package steps — aptInstall, pipInstall, npmInstall, gitClone — in a
// template built with the real SDK against `aiva up` on containers, each against a real
// service of its kind that this file serves itself in a test "internet" (@aiva/node's
// lab/test-internet, whose DNS the sandboxes resolve through: `--dns`): a flat apt
// repository with a .deb made here, a PEP 503 index with wheels, an npm registry with an
// `npm pack` tarball, and `git daemon`. The template points each tool at its mirror the
// way a user would point it at a private one: a sources.list entry, and ENV
// (PIP_INDEX_URL, NPM_CONFIG_REGISTRY). Then a sandbox from the template uses what they
// installed, and packages that do not exist fail the build, naming the step, leaving no
// sandbox behind.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestInternet } from '@aiva/node/testkit';
import { BuildError, type LogEntry, Sandbox, Template } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import {
  makeAptRepository,
  makeGitRepository,
  makeNpmRegistry,
  makePythonIndex,
} from './helpers/package-fixtures.js';

const [APT, PYPI, NPM, GIT] = TestInternet.WEB;
/** The built-in servers hold port 80 of each WEB address: ours listen on this one. */
const PORT = 8080;
const MIRRORS = {
  apt: `http://apt.aiva.test:${PORT}`,
  pypi: `http://pypi.aiva.test:${PORT}/simple/`,
  npm: `http://npm.aiva.test:${PORT}`,
  git: 'git://git.aiva.test',
};
/** How a template points apt at the test's repository only (nothing tries deb.debian.org). */
const APT_SOURCES = `rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && echo 'deb [trusted=yes] ${MIRRORS.apt}/ ./' > /etc/apt/sources.list.d/aiva-test.list`;
const MIRROR_ENV = {
  PIP_INDEX_URL: MIRRORS.pypi,
  PIP_TRUSTED_HOST: 'pypi.aiva.test',
  NPM_CONFIG_REGISTRY: MIRRORS.npm,
};

let up: AivaUp;
let inet: TestInternet;
let work: string;
let commits: { main: string; feature: string };
const templates = new Set<string>();

before(async () => {
  work = await mkdtemp(join(tmpdir(), 'aiva-packages-'));
  const served = (name: string) => join(work, 'served', name);
  await makeAptRepository(served('apt'), join(work, 'src'), 'aiva-hello');
  await makePythonIndex(served('pypi'), ['aiva-pip-hello', 'aiva-pip-user']);
  await makeNpmRegistry(served('npm'), join(work, 'src'), MIRRORS.npm, 'aiva-npm-hello');
  commits = await makeGitRepository(served('git'), join(work, 'src'), 'repo');

  inet = await TestInternet.start({
    'apt.aiva.test': { A: [APT] },
    'pypi.aiva.test': { A: [PYPI] },
    'npm.aiva.test': { A: [NPM] },
    'git.aiva.test': { A: [GIT] },
  });
  await inet.serveDirectory(served('apt'), APT, PORT);
  await inet.serveDirectory(served('pypi'), PYPI, PORT);
  await inet.serveDirectory(served('npm'), NPM, PORT);
  const gitDaemon = ['git', 'daemon', '--reuseaddr', '--export-all', '--informative-errors'];
  await inet.serve(
    [...gitDaemon, `--base-path=${served('git')}`, `--listen=${GIT}`, '--port=9418'],
    GIT,
    9418,
  );
  up = await aivaUp(['--runtime', 'container', '--dns', inet.dnsUpstream]);
  useServer(up);
});
after(async () => {
  // The image store is shared between runs: the templates' layers go with them.
  for (const name of up ? templates : []) {
    const res = await fetch(`${up.url}/templates/${name}`, {
      method: 'DELETE',
      headers: { 'x-api-key': up.apiKey },
    });
    assert.ok(res.status === 204 || res.status === 404, `deleting ${name}: ${res.status}`);
  }
  const code = await up?.stop();
  await inet?.stop();
  await rm(work, { recursive: true, force: true });
  assert.equal(code, 0, up?.output());
  await removeHome(up.home);
});
// Registered after the hooks above: `after` hooks run in the order they were added.
checkHostLeaks();

/** Builds `template` as `name` (every step run: the layer cache is shared between runs). */
async function build(template: Parameters<typeof Template.build>[0], name: string, logs: LogEntry[] = []) {
  templates.add(name);
  return Template.build(template, name, { skipCache: true, onBuildLogs: (l) => logs.push(l) });
}

/** The BuildError a build of `template` must end with. */
async function failedBuild(
  template: Parameters<typeof Template.build>[0],
  name: string,
): Promise<BuildError> {
  const e = await build(template, name).then(
    () => assert.fail(`the build of ${name} succeeded`),
    (x: unknown) => x,
  );
  assert.ok(e instanceof BuildError, String(e));
  return e;
}

/**
 * The source line of this file that the SDK blames for a failed build: it points the
 * error's stack at the builder call of the step the server's `reason.step` names.
 */
async function failedCall(e: BuildError): Promise<string> {
  const frame = /\(?(\/\S+\/template-packages\.test\.ts):(\d+):\d+\)?/.exec(e.stack ?? '');
  assert.ok(frame?.[1], `the stack names no line of this file:\n${e.stack}`);
  return (await readFile(frame[1], 'utf8')).split('\n')[Number(frame[2]) - 1] ?? '';
}

async function noSandboxesLeft(): Promise<void> {
  assert.deepEqual(await Sandbox.list().nextItems(), [], 'no sandbox is left behind');
}

describe('package steps of the e2b SDK against real package services', () => {
  test('aptInstall, pipInstall, npmInstall and gitClone install from the mirrors a template points them at', async () => {
    const logs: LogEntry[] = [];
    const template = Template()
      .fromTemplate('base')
      .setEnvs(MIRROR_ENV)
      .runCmd(APT_SOURCES, { user: 'root' })
      .aptInstall(['aiva-hello'])
      .pipInstall(['aiva-pip-hello'])
      .pipInstall(['aiva-pip-user'], { g: false })
      .npmInstall(['aiva-npm-hello'], { g: true })
      .npmInstall(['aiva-npm-hello'])
      .gitClone(`${MIRRORS.git}/repo.git`, '/home/user/repo', { branch: 'feature', depth: 1 });
    const started = Date.now();
    await build(template, 'package-steps', logs);
    const text = logs.map((l) => l.message).join('\n');
    console.log(`# package-steps built in ${Date.now() - started} ms`);
    // What the SDK sent (one RUN step each; apt, pip and npm -g as root), as aiva logged it.
    for (const cmd of [
      'apt-get update && DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y aiva-hello root',
      'pip install aiva-pip-hello root',
      'pip install --user aiva-pip-user\n',
      'npm install -g aiva-npm-hello root',
      'npm install aiva-npm-hello\n',
      'git clone git://git.aiva.test/repo.git --branch feature --single-branch --depth 1 /home/user/repo\n',
    ])
      assert.ok(text.includes(`] RUN ${cmd}`), `RUN ${cmd}`);

    const sbx = await Sandbox.create('package-steps');
    try {
      const run = async (cmd: string) => (await sbx.commands.run(cmd)).stdout.trim();
      assert.equal(await run('whoami && pwd'), 'user\n/home/user');
      // apt: the .deb's binary, installed by dpkg from the test's repository.
      assert.equal(await run('aiva-hello there'), 'hello from aiva-hello there');
      assert.match(
        await run(`dpkg-query -W -f='\${Status} \${Version}' aiva-hello`),
        /install ok installed 1\.0/,
      );
      // pip (global, as root): importable by the default user.
      assert.equal(
        await run(`python -c 'import aiva_pip_hello as m; print(m.GREETING, m.__file__)'`),
        'hello from aiva-pip-hello /usr/local/lib/python3.11/dist-packages/aiva_pip_hello/__init__.py',
      );
      // pip with g: false (`--user`, as the default user): in the user's site-packages.
      assert.match(
        await run(`python -c 'import aiva_pip_user as m; print(m.GREETING, m.__file__)'`),
        /^hello from aiva-pip-user \/home\/user\/\.local\/lib\/python3\.\d+\/site-packages\//,
      );
      // npm -g (as root): its bin on the default user's PATH.
      assert.equal(await run('aiva-npm-hello'), 'hello from aiva-npm-hello');
      assert.equal(await run('command -v aiva-npm-hello'), '/usr/local/bin/aiva-npm-hello');
      // npm (local, as the default user in the workdir): require() from there.
      assert.equal(
        await run(`node -e "console.log(require('aiva-npm-hello').greeting)"`),
        'hello from aiva-npm-hello',
      );
      assert.equal(await run('stat -c %U /home/user/node_modules/aiva-npm-hello'), 'user');
      // git: the feature branch's commit, shallow, in the path asked for, owned by the user.
      const repo = '/home/user/repo';
      assert.equal(await sbx.files.read(`${repo}/README`), 'feature branch\n');
      assert.equal(await sbx.files.read(`${repo}/feature.txt`), 'only on the feature branch\n');
      assert.equal(
        await run(`git -C ${repo} rev-parse HEAD && git -C ${repo} branch --show-current`),
        `${commits.feature}\nfeature`,
      );
      assert.equal(await run(`git -C ${repo} rev-list --count HEAD && stat -c %U ${repo}`), '1\nuser');
    } finally {
      await sbx.kill();
    }
    await noSandboxesLeft();
  });

  test('aptInstall of a package no repository has fails the build at that step, with apt’s reason', async () => {
    const missing = Template()
      .fromTemplate('base')
      .runCmd(APT_SOURCES, { user: 'root' })
      .aptInstall(['aiva-no-such-pkg']);
    const e = await failedBuild(missing, 'package-steps-no-apt');
    assert.match(
      e.message,
      /failed to run command 'apt-get update && .*apt-get install -y aiva-no-such-pkg'/,
    );
    assert.match(e.message, /exit status 100/);
    assert.match(e.message, /Unable to locate package aiva-no-such-pkg/);
    assert.match(await failedCall(e), /\.aptInstall\(\['aiva-no-such-pkg'\]\)/);
    await assert.rejects(Sandbox.create('package-steps-no-apt'), /has no ready build/);
    await noSandboxesLeft();
  });

  test('pipInstall of a package the index does not have fails the build at that step, with pip’s reason', async () => {
    const missing = Template().fromTemplate('base').setEnvs(MIRROR_ENV).pipInstall('aiva-no-such-pkg');
    const e = await failedBuild(missing, 'package-steps-no-pip');
    assert.match(e.message, /failed to run command 'pip install aiva-no-such-pkg': exit status 1/);
    assert.match(e.message, /No matching distribution found for aiva-no-such-pkg/);
    assert.match(await failedCall(e), /\.pipInstall\('aiva-no-such-pkg'\)/);
    await noSandboxesLeft();
  });
});
