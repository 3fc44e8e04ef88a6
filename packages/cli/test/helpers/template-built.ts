import { before } from 'node:test';
import { explain, removeHome, runCli, tempHome } from './run-cli.js';

/**
 * Before a file's tests: the recipe template `name` built into the shared image store, as
 * packages/e2e's `templateBuiltForFile` does (minutes the first time, then cached for
 * every run and both packages; a build already under way elsewhere is waited for).
 */
export function templateBuiltForFile(name: string): void {
  before(async () => {
    const home = await tempHome();
    try {
      const r = await runCli(['image', 'build', name, '--no-kernel'], {
        env: { AIVA_HOME: home },
        timeoutMs: 30 * 60_000,
      });
      if (r.code !== 0) throw new Error(`the ${name} template did not build: ${explain(r)}`);
    } finally {
      await removeHome(home);
    }
  });
}
