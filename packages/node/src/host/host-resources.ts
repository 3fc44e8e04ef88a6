import { readdir, readFile } from 'node:fs/promises';
import { childCgroups } from './cgroups.js';
import { runCommand } from './command.js';
import type { HostScope } from './host-scope.js';
import { SANDBOX_ID_BASE } from './idmapped-overlay.js';

/**
 * One node of several on a host (cluster tests): only what its scope names, its data
 * directory holds and its network namespace has is counted.
 */
export interface NodeResourceFilter {
  scope: HostScope;
  /** The node's AIVA_HOME: its mounts and sandbox disks are under it. */
  home: string;
  /** The network namespace (in /run/netns) the node runs in: links, nft tables, forwarding there. */
  netns?: string;
  /** How many address slots the node has (its host id span); default: up to the end of the id space. */
  addressSlots?: number;
}

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
  /** Loop devices backed by sandbox disks (`disk.ext4`) and volume images (`volumes/vol….ext4`). */
  loops: string[];
  /**
   * Sandboxes' user namespaces: pinned files under /run/aiva/userns, idmapped mounts
   * (layers attached while an overlay is made), and processes of sandbox host ids.
   */
  userns: string[];
}

async function userNamespaceResources(node?: NodeResourceFilter): Promise<string[]> {
  const dir = node?.scope.userNamespaceDir ?? '/run/aiva/userns';
  const out = (await readdir(dir).catch(() => [] as string[])).map((f) => `pinned ${f}`);
  for (const line of (await readFile('/proc/self/mountinfo', 'utf8')).split('\n')) {
    const f = line.split(' ');
    if ((f[5] ?? '').split(',').includes('idmapped') && (!node || (f[4] ?? '').startsWith(node.home)))
      out.push(`idmapped mount ${f[4]}`);
  }
  const span = node
    ? node.scope.idSpan(node.addressSlots ?? 2 ** 30)
    : { first: SANDBOX_ID_BASE, last: 2 ** 31 - 1 };
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    if (uid >= span.first && uid <= span.last && uid < 2 ** 31) out.push(`process ${pid} of host uid ${uid}`);
  }
  return out;
}

/** Whether process `pid` is in a cgroup under `parent` (any hierarchy). */
async function inCgroupUnder(pid: string, parent: string): Promise<boolean> {
  const text = await readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  return text.split('\n').some((l) => l.split(':')[2]?.startsWith(`/${parent}/`));
}

/** A volume's mount point, by the name `VolumeDisks` gives it. */
const VOLUME_MOUNT = /\/volumes\/vol[a-f0-9]{20}$/;

async function sandboxDiskLoops(home?: string): Promise<string[]> {
  const { stdout } = await runCommand('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout
    .split('\n')
    .map((l) => l.trim().replace(/\s+/, ' '))
    .filter(
      (l) =>
        /(\/disk|\/volumes\/vol[a-f0-9]{20})\.ext4( \(deleted\))?$/.test(l) &&
        (!home || l.includes(` ${home}/`)),
    );
}

async function vmmAndRuntimeProcesses(node?: NodeResourceFilter): Promise<string[]> {
  const out: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replaceAll('\0', ' ').trim();
    if (
      /^(\S*\/)?(qemu-system-\S+|firecracker|runc|crun|mmdebstrap|aiva-mount)\b/.test(cmd) ||
      /aiva\/envd\.js/.test(cmd)
    ) {
      if (node && !cmd.includes(node.scope.stateDir) && !cmd.includes(node.home)) {
        if (!(await inCgroupUnder(pid, node.scope.cgroupParent))) continue;
      }
      out.push(`${pid} ${cmd.slice(0, 160)}`);
    }
  }
  return out.sort();
}

/**
 * The host's sandbox resources by aiva's names; with `node`, only that node's (its
 * scope's names, its home's mounts and disks, its processes, and the links, nft tables
 * and forwarding of its network namespace).
 */
export async function hostResources(node?: NodeResourceFilter): Promise<HostResources> {
  const inNs = (cmd: string, args: string[]) =>
    node?.netns
      ? runCommand('nsenter', [`--net=/run/netns/${node.netns}`, '--', cmd, ...args])
      : runCommand(cmd, args);
  const stateDir = node?.scope.stateDir ?? '/run/aiva';
  const mounts = (await readFile('/proc/self/mounts', 'utf8'))
    .split('\n')
    .filter((l) => /\boverlay\b|aiva/.test(l) || VOLUME_MOUNT.test(l.split(' ')[1] ?? ''))
    .map((l) => l.split(' ')[1] ?? '')
    .filter((m) => !node || m.startsWith(`${node.home}/`) || m.startsWith(`${stateDir}/`));
  const allNetns = (await runCommand('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '');
  const allLinks = (await inNs('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0] ?? '');
  const nftTables = (await inNs('nft', ['list', 'tables'])).stdout
    .split('\n')
    .filter((l) => /^table \S+ aiva$/.test(l.trim()));
  const forward = (await inNs('sysctl', ['-n', 'net.ipv4.ip_forward'])).stdout.trim();
  const saved = await readFile(`${stateDir}/ip_forward.saved`, 'utf8').then(
    (t) => ` (aiva saved ${t.trim()})`,
    () => '',
  );
  const oci: string[] = [];
  for (const root of [`${stateDir}/runc`, `${stateDir}/crun`]) {
    oci.push(...(await readdir(root).catch(() => [] as string[])).map((c) => `${root}/${c}`));
  }
  const ownNetns = (n: string) => (node ? node.scope.ownsNetns(n) : n.startsWith('aiva-'));
  return {
    processes: await vmmAndRuntimeProcesses(node),
    mounts: mounts.sort(),
    netns: allNetns.filter(ownNetns).sort(),
    links: allLinks.filter((n) => /^aiva\d+$/.test(n)).sort(),
    cgroups: (await childCgroups(node?.scope.cgroupParent ?? 'aiva')).sort(),
    ociContainers: oci.sort(),
    nftTables: nftTables.sort(),
    ipForward: [`${forward}${saved}`],
    testNets: node ? [] : [...allNetns, ...allLinks].filter((n) => n.startsWith('tnet')).sort(),
    loops: (await sandboxDiskLoops(node?.home)).sort(),
    userns: (await userNamespaceResources(node)).sort(),
  };
}

/**
 * Waits (up to 2 s, for asynchronous cleanup to settle) until the host holds no more
 * sandbox resources than `baseline`; returns what is left over, if anything.
 */
export async function leftoverHostResources(
  baseline: HostResources,
  node?: NodeResourceFilter,
): Promise<Partial<HostResources>> {
  let now = await hostResources(node);
  for (let i = 0; i < 20 && JSON.stringify(now) !== JSON.stringify(baseline); i++) {
    await new Promise((r) => setTimeout(r, 100));
    now = await hostResources(node);
  }
  const left: Partial<HostResources> = {};
  for (const k of Object.keys(now) as (keyof HostResources)[]) {
    const extra = now[k].filter((x) => !baseline[k].includes(x));
    if (extra.length > 0) left[k] = extra;
  }
  return left;
}
