import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { explain, runCli } from './helpers/run-cli.js';

describe('aiva doctor', () => {
  it('says which runtimes work here, which one is the default, and the network checks', async () => {
    const r = await runCli(['doctor']);
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /^RUNTIME +VARIANT +STATUS +WHY/m);
    for (const driver of ['container', 'qemu-microvm', 'firecracker']) {
      assert.match(r.stdout, new RegExp(`^${driver} `, 'm'));
    }
    assert.match(r.stdout, /^NETWORK +STATUS +DETAIL/m);
    assert.match(r.stdout, /^Default runtime: (container|qemu-microvm|firecracker) \(/m);
  });

  it('prints the same as JSON', async () => {
    const r = await runCli(['doctor', '--json']);
    assert.equal(r.code, 0, explain(r));
    const host = JSON.parse(r.stdout) as { defaultDriver?: string; checks: { driver: string }[] };
    assert.ok(host.defaultDriver, 'a default runtime');
    assert.ok(host.checks.some((c) => c.driver === 'container'));
  });

  it('refuses an option it does not know', async () => {
    const r = await runCli(['doctor', '--bogus']);
    assert.equal(r.code, 1, explain(r));
    assert.match(r.stderr, /error: unknown option '--bogus'/);
  });
});

checkHostLeaks({ betweenNodes: true });
