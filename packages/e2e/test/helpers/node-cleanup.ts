// Run in a cluster node's network namespace after its agent stopped, when a test failed and
// left sandboxes there: opens the node as the agent did, kills what it runs, closes it.
// Arguments: <home> <tag> <address block> <id slot offset>.
import { fileURLToPath } from 'node:url';
import { HostScope, openLocalNode } from '@aiva/node';

const [home = '', tag, addressBlock, offset] = process.argv.slice(2);
const node = await openLocalNode({
  home,
  recipesDir: fileURLToPath(new URL('../../../../../images', import.meta.url)),
  envdDir: fileURLToPath(new URL('./', import.meta.resolve('@aiva/envd/guest/envd.js'))),
  addressBlock,
  scope: new HostScope({ tag, idSlotOffset: Number(offset) }),
});
const left = node.sandboxes.list().map((s) => s.id);
await node.sandboxes.killAll();
await node.sandboxes.close();
process.stdout.write(`${JSON.stringify(left)}\n`);
