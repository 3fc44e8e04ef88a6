// One node of several on this host, in a process of its own: started by the test with
// `nsenter --net=/run/netns/<ns> -- node scoped-node.js <json options>` (not `ip netns
// exec`, which remounts /sys and so hides the cgroup hierarchy). It takes one command
// per line on stdin and answers one JSON line on stdout.
import { createInterface } from 'node:readline';
import { dataDir, execInSandbox, HostScope, ImageStore, SandboxManager } from '../../src/index.js';
import { checkHost, createRuntimes } from '../../src/runtime/select.js';
import { envdDir, repoImages } from './repo.js';

export interface ScopedNodeOptions {
  home: string;
  tag: string;
  addressBlock: string;
  idSlotOffset: number;
}

/** What the test sends (one per line). */
export type ScopedNodeCommand =
  | { op: 'open' }
  | { op: 'create' }
  | { op: 'exec'; id: string; command: string }
  | { op: 'close' }
  | { op: 'kill-all' };

if (process.argv[2]) {
  const options = JSON.parse(process.argv[2]) as ScopedNodeOptions;
  const scope = new HostScope({ tag: options.tag, idSlotOffset: options.idSlotOffset });
  const images = new ImageStore({ home: dataDir(), recipesDir: repoImages, envdDir });
  const runtimes = createRuntimes(await checkHost(), { scope });
  let m: SandboxManager | undefined;
  const node = () => {
    if (!m) throw new Error('the node is not open');
    return m;
  };
  const handle = async (c: ScopedNodeCommand): Promise<unknown> => {
    switch (c.op) {
      case 'open':
        m = await SandboxManager.open({
          home: options.home,
          images,
          runtimes,
          scope,
          defaultDriver: 'container',
          addressBlock: options.addressBlock,
          dnsUpstreams: ['127.0.0.1:9'],
          monitorIntervalMs: 200,
        });
        return node().list();
      case 'create':
        return node().create({ memoryMiB: 256, vcpus: 1 });
      case 'exec': {
        const s = node().get(c.id);
        return execInSandbox(s.network?.address ?? '', c.command, { accessToken: s.accessToken });
      }
      case 'close':
        await node().close();
        m = undefined;
        return null;
      case 'kill-all':
        await node().killAll();
        return null;
    }
  };
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    try {
      const data = await handle(JSON.parse(line) as ScopedNodeCommand);
      process.stdout.write(`${JSON.stringify({ ok: true, data })}\n`);
    } catch (e) {
      process.stdout.write(`${JSON.stringify({ ok: false, error: (e as Error).stack ?? String(e) })}\n`);
    }
  }
  if (m) {
    await m.killAll();
    await m.close();
  }
}
