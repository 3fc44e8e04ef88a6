import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { mountedUnder } from '../../src/host/mounts.js';

/**
 * A new directory, removed when the test file ends, unless something is still mounted
 * under it: a leak to report, not a tree to delete through.
 *
 * Call it at the top level of a test file or inside a test, not inside a hook: an
 * `after` registered from a hook runs as soon as that hook ends.
 */
export async function tempDir(prefix = 'aiva-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  after(async () => {
    const mounts = await mountedUnder(dir);
    if (mounts.length > 0) throw new Error(`not removing ${dir}: still mounted: ${mounts.join(', ')}`);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}
