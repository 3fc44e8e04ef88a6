// Failed, interrupted, out-of-space and concurrent builds: the store never holds a
// partial artefact, says which step failed and why, and leaves no mount or process.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ImageBuildError, ImageStore, runCommand } from '../src/index.js';
import { entries, mountsUnder, processesMentioning } from './helpers/leaks.js';
import { RecordingReporter, recipesWith } from './helpers/recipes.js';
import { envdDir } from './helpers/repo.js';
import { tempDir } from './helpers/temp-dir.js';

const cli = fileURLToPath(new URL('../../../cli/dist/src/main.js', import.meta.url));

/** A recipe that builds quickly: Debian minbase and nothing else. */
const tiny = {
  packages: [],
  run: [],
  user: { name: 'user', uid: 1000, sudo: false, shell: '/bin/sh' },
  disk: { sizeMiB: 512 },
};

async function assertNothingLeft(home: string): Promise<void> {
  assert.deepEqual(await entries(join(home, 'images', 'tmp')), [], 'no work directory is left');
  assert.deepEqual(await entries(join(home, 'images', 'layers')), [], 'no layer was published');
  assert.deepEqual(await entries(join(home, 'images', 'images')), [], 'no image was published');
  assert.deepEqual(await mountsUnder(home), [], 'no mount is left');
  assert.deepEqual(await processesMentioning(home), [], 'no build process is left');
}

describe('image build failures', () => {
  test('an apt error names the step and the package, and leaves nothing', async () => {
    const home = await tempDir();
    const recipes = await recipesWith('broken', { packages: ['bash', 'sudo', 'no-such-package-aiva'] });
    const store = new ImageStore({ home, recipesDir: recipes, envdDir });
    await assert.rejects(store.ensureTemplate('broken'), (e: unknown) => {
      assert.ok(e instanceof ImageBuildError);
      assert.match(e.message, /step "Debian bookworm with 3 packages [0-9a-f]{12}" failed/);
      assert.match(e.message, /no-such-package-aiva/);
      return true;
    });
    await assertNothingLeft(home);
  });

  test('a full disk fails with a clear reason and leaves nothing', async () => {
    const home = await tempDir();
    await runCommand('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'aiva-test-full', home]);
    try {
      const recipes = await recipesWith('tiny', tiny);
      const store = new ImageStore({ home, recipesDir: recipes, envdDir });
      await assert.rejects(store.ensureTemplate('tiny'), (e: unknown) => {
        assert.ok(e instanceof ImageBuildError);
        assert.match(e.message, /No space left on device/);
        return true;
      });
      assert.deepEqual(await entries(join(home, 'images', 'tmp')), []);
      assert.deepEqual(await entries(join(home, 'images', 'layers')), []);
      assert.deepEqual(await processesMentioning(home), []);
      assert.deepEqual(await mountsUnder(join(home, 'images')), []);
    } finally {
      await runCommand('umount', [home]);
    }
  });

  test('Ctrl-C during `aiva image build` stops it and leaves nothing', async () => {
    const home = await tempDir();
    const recipes = await recipesWith('tiny', tiny);
    const child = spawn(process.execPath, [cli, 'image', 'build', 'tiny', '--no-kernel'], {
      env: { ...process.env, AIVA_HOME: home, AIVA_RECIPES: recipes },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    // Interrupt once Debian packages are being installed.
    while (!/\d+\/\d+/.test(stderr) && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');
    assert.equal(code, 130, stderr);
    assert.match(stderr, /interrupted/);
    await assertNothingLeft(home);
  });

  test('two builds of one recipe at once share one result', async () => {
    const home = await tempDir();
    const recipes = await recipesWith('tiny', tiny);
    const a = new RecordingReporter();
    const b = new RecordingReporter();
    // The template and its ext4 disk (made on first use, for microVMs).
    const build = async (reporter: RecordingReporter) => {
      const store = new ImageStore({ home, recipesDir: recipes, envdDir });
      return store.ensureDisk(await store.ensureTemplate('tiny', { reporter }), { reporter });
    };
    const [x, y] = await Promise.all([build(a), build(b)]);
    assert.equal([a, b].filter((r) => r.stateOf('ext4') === 'running').length, 1, 'the disk was made once');
    assert.equal(x.hash, y.hash);
    assert.deepEqual(x.layers, y.layers);
    const debianBuilds = [a, b].filter((r) => r.stateOf('debian') === 'running');
    assert.equal(debianBuilds.length, 1, 'the Debian layer was built once');
    assert.deepEqual(await entries(join(home, 'images', 'tmp')), []);
    assert.equal((await entries(join(home, 'images', 'layers'))).length, 2);
    assert.equal((await entries(join(home, 'images', 'images'))).length, 1);
    await runCommand('e2fsck', ['-n', '-f', x.disk]);
  });
});
