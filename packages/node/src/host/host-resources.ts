import { readdir, readFile } from 'node:fs/promises';
import { childCgroups } from './cgroups.js';
import { runCommand } from './command.js';
import { SANDBOX_ID_BASE } from './idmapped-overlay.js';

/**
 * What sandboxes take on this host, by the names aiva gives them: a snapshot to compare
 * (tests check that nothing is left; an operator can look for debris).
 */
export interface HostResources {
  processes: string[];
  mounts: string[];
  netns: string[];
  links: string[];
  cgroups: string[];
  ociContainers: string[];
  /** nftables tables named aiva (any family). */
  nftTables: string[];
  /** net.ipv4.ip_forward, and whether aiva has saved a value to restore (one entry). */
  ipForward: string[];
  /** Test internets (namespaces and links named tnet…). */
  testNets: string[];
  /** Loop devices backed by sandbox disks (`disk.ext4`). */
  loops: string[];
  /**
   * Sandboxes' user namespaces: pinned files under /run/aiva/userns, idmapped mounts
   * (layers attached while an overlay is made), and processes of sandbox host ids.
   */
  userns: string[];
}

async function userNamespaceResources(): Promise<string[]> {
  const out = (await readdir('/run/aiva/userns').catch(() => [] as string[])).map((f) => `pinned ${f}`);
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const f = line.split(' ');
    if ((f[5] ?? '').split(',').includes('idmapped')) out.push(`idmapped mount ${f[4]}`);
  }
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (uid >= SANDBOX_ID_BASE && uid < 2 ** 31) out.push(`process ${pid} of host uid ${uid}`);
  }
  return out;
}

async function sandboxDiskLoops(): Promise<string[]> {
  const { stdout } = await runCommand('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout
    .split('\n')
    .map((l) => l.trim().replace(/\s+/, ' '))
    .filter((l) => /\/disk\.ext4( \(deleted\))?$/.test(l));
}

async function vmmAndRuntimeProcesses(): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    if (
      /^(\S*\/)?(qemu-system-\S+|firecracker|runc|crun|mmdebstrap|aiva-mount)\b/.test(cmd) ||
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
  const allNetns = (await runCommand('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '');
  const allLinks = (await runCommand('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '');
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
    netns: allNetns.filter((n) => n.startsWith('aiva-')).sort(),
    links: allLinks.filter((n) => /^aiva\d+$/.test(n)).sort(),
    cgroups: (await childCgroups('aiva')).sort(),
    ociContainers: oci.sort(),
    nftTables: nftTables.sort(),
    ipForward: [`${forward}${saved}`],
    testNets: [...allNetns, ...allLinks].filter((n) => n.startsWith('tnet')).sort(),
    loops: (await sandboxDiskLoops()).sort(),
    userns: (await userNamespaceResources()).sort(),
  };
}

/**
 * Waits (up to 2 s, for asynchronous cleanup to settle) until the host holds no more
 * sandbox resources than `baseline`; returns what is left over, if anything.
 */
export async function leftoverHostResources(baseline: HostResources): Promise<Partial<HostResources>> {
  let now = await hostResources();
  for (let i = 0; i < 20 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await hostResources();
  }
  const left: Partial<HostResources> = {};
  for (const k of Object.keys(now) as (keyof HostResources)[]) {
    const extra = now[k].filter((x) => !baseline[k].includes(x));
    if (extra.length > 0) left[k] = extra;
  }
  return left;
}
