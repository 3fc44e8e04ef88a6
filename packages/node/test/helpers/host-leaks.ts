import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { childCgroups } from '../../src/host/cgroups.js';
import { runCommand } from '../../src/index.js';

/** What sandboxes take on a host: a snapshot to compare before and after tests. */
export interface HostResources {
  processes: string[];
  mounts: string[];
  netns: string[];
  links: string[];
  cgroups: string[];
  ociContainers: string[];
  /** nftables tables named aiva (any family). */
  nftTables: string[];
  /** net.ipv4.ip_forward, and whether aiva has saved a value to restore. */
  ipForward: string;
  /** Test internets (namespaces and links named tnet…). */
  testNets: string[];
}

async function vmmAndRuntimeProcesses(): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    if (
      /^(\S*\/)?(qemu-system-\S+|firecracker|runc|crun|mmdebstrap)\b/.test(cmd) ||
      /aiva\/envd\.js/.test(cmd)
    ) {
      out.push(`${pid} ${cmd.slice(0, 160)}`);
    }
  }
  return out.sort();
}

export async function hostResources(): Promise<HostResources> {
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .filter((l) => /\boverlay\b|aiva/.test(l))
    .map((l) => l.split(' ')[1] ?? '');
  const netns = (await runCommand('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith('aiva-'));
  const allLinks = (await runCommand('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '');
  const links = allLinks.filter((n) => /^aiva\d+$/.test(n));
  const allNetns = (await runCommand('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '');
  const nftTables = (await runCommand('nft', ['list', 'tables'])).stdout
    .split('\n')
    .filter((l) => /^table \S+ aiva$/.test(l.trim()));
  const forward = (await readFile('/proc/sys/net/ipv4/ip_forward', 'utf8')).trim();
  const saved = await readFile('/run/aiva/ip_forward.saved', 'utf8').then(
    (t) => ` (aiva saved ${t.trim()})`,
    () => '',
  );
  const oci: string[] = [];
  for (const root of ['/run/aiva/runc', '/run/aiva/crun']) {
    oci.push(...(await readdir(root).catch(() => [] as string[])).map((c) => `${root}/${c}`));
  }
  return {
    processes: await vmmAndRuntimeProcesses(),
    mounts: mounts.sort(),
    netns: netns.sort(),
    links: links.sort(),
    cgroups: (await childCgroups('aiva')).sort(),
    ociContainers: oci.sort(),
    nftTables: nftTables.sort(),
    ipForward: `${forward}${saved}`,
    testNets: [...allNetns, ...allLinks].filter((n) => n.startsWith('tnet')).sort(),
  };
}

/**
 * Registers hooks that record the host's sandbox resources before the test file and
 * fail it if any are left after: processes, mounts, namespaces, links, cgroups,
 * container state, aiva's nftables table, IPv4 forwarding, test internets. Waits briefly for asynchronous cleanup to settle.
 */
export function checkHostLeaks(): void {
  let baseline: HostResources;
  before(async () => {
    baseline = await hostResources();
  });
  after(async () => {
    let now = await hostResources();
    for (let i = 0; i < 20 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
      await new Promise((r) => setTimeout(r, 100));
      now = await hostResources();
    }
    assert.deepEqual(now, baseline, 'the tests left sandbox resources behind on the host');
  });
}
