import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { checkHostLeaks } from '@aiva/node/testkit';
import { explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';

// A data directory of the file's own whose image store is the shared one: the base
// template is cached there, so a build of it only checks that it is current.
let home = '';
const aiva = (...args: string[]) => runCli(args, { env: { AIVA_HOME: home } });

describe('aiva image', () => {
  before(async () => {
    home = await tempHome();
  });
  after(async () => {
    if (home) await removeHome(home);
  });

  it('build base reuses the cached template', async () => {
    const r = await aiva('image', 'build', 'base', '--no-kernel');
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stderr, /^Template base [0-9a-f]{12} ready in [\d.]+ s: \S+rootfs\.ext4$/m);
  });

  it('ls lists the base template as current', async () => {
    const r = await aiva('image', 'ls');
    assert.equal(r.code, 0, explain(r));
    assert.match(r.stdout, /^NAME +KIND +HASH +RECIPE +SIZE +ON DISK +CREATED +STATUS$/m);
    assert.match(r.stdout, /^base +template +[0-9a-f]{12} .* current$/m);
    const json = await aiva('image', 'ls', '--json');
    assert.equal(json.code, 0, explain(json));
    const items = JSON.parse(json.stdout) as { name: string; kind: string; current?: boolean }[];
    assert.ok(items.some((a) => a.name === 'base' && a.kind === 'template' && a.current));
    assert.ok(
      items.every((a) => a.kind !== 'layer'),
      'layers only with --all',
    );
  });

  it('rm of an image that does not exist fails and says so', async () => {
    const r = await aiva('image', 'rm', 'no-such-template');
    assert.equal(r.code, 1, explain(r));
    assert.equal(r.stderr, 'aiva: no cached image matches "no-such-template"\n');
    assert.equal(r.stdout, '');
  });

  it('build of a template without a recipe fails and says so', async () => {
    const r = await aiva('image', 'build', 'no-such-template', '--no-kernel');
    assert.equal(r.code, 1, explain(r));
    assert.match(
      r.stderr,
      /aiva: building no-such-template: unknown template "no-such-template": no recipe at /,
    );
  });

  it('bad arguments: commander says what is wrong, with the usage', async () => {
    const missing = await aiva('image', 'rm');
    assert.equal(missing.code, 1, explain(missing));
    assert.match(missing.stderr, /error: missing required argument 'ref'/);
    assert.match(missing.stderr, /Usage: aiva image rm \[options\] <ref\.\.\.>/);
    const unknown = await aiva('image', 'frobnicate');
    assert.equal(unknown.code, 1, explain(unknown));
    assert.match(unknown.stderr, /error: unknown command 'frobnicate'/);
    const option = await aiva('image', 'ls', '--bogus');
    assert.equal(option.code, 1, explain(option));
    assert.match(option.stderr, /error: unknown option '--bogus'/);
  });
});

checkHostLeaks({ betweenNodes: true });
