import { mkdir, readFile } from 'node:fs/promises';
import { runCommand } from '../host/command.js';
import { DEFAULT_HOST_SCOPE, type HostScope } from '../host/host-scope.js';
import { pinUserNamespace, unpinNamespace } from '../host/idmapped-overlay.js';
import type { SandboxNetworkAttachment, SandboxUserNamespace } from '../runtime/types.js';
import type { LinkAddresses } from './address-pool.js';

/**
 * Inside a microVM's namespace the guest always has the same address, so that clones
 * of one memory snapshot never collide; the namespace translates it to the sandbox's
 * own link address. Its resolver is its gateway, which the namespace forwards to the
 * node's DNS forwarder on the host end of the link.
 */
export const VM_GUEST = {
  address: '169.254.0.21',
  gateway: '169.254.0.22',
  gatewayMac: '02:00:00:00:00:02',
  prefix: 30,
} as const;

/** How the sandbox joins its namespace: a container lives in it, a microVM behind a TAP in it. */
export type AttachMode = 'namespace' | 'tap';

/**
 * Namespaces are named by address slot, so that one can be made before its sandbox exists
 * (the pool); a node with a tag puts it in the name (HostScope.netnsName). These are the
 * untagged node's names.
 */
export const netnsName = (slot: number) => DEFAULT_HOST_SCOPE.netnsName(slot);
export const hostLinkName = (slot: number) => `aiva${slot}`;

/** Where the untagged node pins the user namespaces of sandboxes, one file per network namespace, of its name. */
export const USERNS_DIR = DEFAULT_HOST_SCOPE.userNamespaceDir;
export const userNamespaceFile = (netns: string) => DEFAULT_HOST_SCOPE.userNamespaceFile(netns);

let netnsDirReady: Promise<void> | undefined;
/**
 * /run/netns as `ip netns add` leaves it: a shared mount of its own, so that a namespace
 * unpinned here is unpinned in every mount namespace that copied it. Done before
 * pinning a namespace there ourselves: were `ip` to make it a mount later, it would
 * cover (and keep alive) what is pinned below.
 */
function prepareNetnsDir(): Promise<void> {
  netnsDirReady ??= (async () => {
    await mkdir('/run/netns', { recursive: true });
    const info = await readFile('/proc/self/mountinfo', 'utf8');
    if (!info.split('\n').some((l) => l.split(' ')[4] === '/run/netns'))
      await runCommand('mount', ['--bind', '/run/netns', '/run/netns']);
    await runCommand('mount', ['--make-shared', '/run/netns']);
  })().catch((e) => {
    netnsDirReady = undefined;
    throw e;
  });
  return netnsDirReady;
}

/**
 * The sandbox's user namespace (ids 0-65535 to its slot's host range, `sandboxIdRange`)
 * and its network namespace, made inside it (`aiva-mount userns`): root in the sandbox
 * then has CAP_NET_ADMIN, CAP_NET_RAW and CAP_SYS_ADMIN over its network namespace, so
 * it can mount its /sys, ping and bind ports below 1024 as without a user namespace. The
 * host's root keeps every capability over both (they are its descendants): `ip -n`,
 * nsenter and QEMU's TAP work as before.
 */
async function createNamespaces(
  netns: string,
  slot: number,
  scope: HostScope,
): Promise<SandboxUserNamespace> {
  const ids = scope.idRange(slot);
  await prepareNetnsDir();
  await mkdir(scope.userNamespaceDir, { recursive: true, mode: 0o700 });
  const path = scope.userNamespaceFile(netns);
  await pinUserNamespace(ids, path, `/run/netns/${netns}`);
  return { path, ...ids };
}

const ip = (args: string[], input?: string) => runCommand('ip', args, { input });
const inNetns = (netns: string, argv: string[], input?: string) =>
  runCommand('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { input });

/** A network namespace made by createLink, with the user namespace that owns it, if any. */
export interface SandboxNamespaces {
  netns: string;
  userns?: SandboxUserNamespace;
}

/**
 * Creates a network namespace and its point-to-point link to the host (a veth pair:
 * `aiva<slot>` on the host, `eth0` inside, the namespace's default route via the host
 * end). No IPv6: neither end gets a link-local address. With `userNamespace`, the
 * network namespace is made inside a user namespace of the slot's own (createNamespaces).
 * On failure everything made so far is removed.
 */
export async function createLink(
  link: LinkAddresses,
  userNamespace = false,
  scope: HostScope = DEFAULT_HOST_SCOPE,
): Promise<SandboxNamespaces> {
  const netns = scope.netnsName(link.slot);
  const hostIf = hostLinkName(link.slot);
  let userns: SandboxUserNamespace | undefined;
  try {
    if (userNamespace) userns = await createNamespaces(netns, link.slot, scope);
    else await ip(['netns', 'add', netns]);
    await ip(
      ['-batch', '-'],
      [
        `link add ${hostIf} type veth peer name eth0 netns ${netns}`,
        `link set ${hostIf} addrgenmode none`,
        `addr add ${link.host}/${link.prefix} dev ${hostIf}`,
        `link set ${hostIf} up`,
      ].join('\n'),
    );
    await ip(
      ['-n', netns, '-batch', '-'],
      [
        'link set lo up',
        'link set eth0 addrgenmode none',
        `addr add ${link.sandbox}/${link.prefix} dev eth0`,
        'link set eth0 up',
        `route add default via ${link.host}`,
      ].join('\n'),
    );
    return { netns, userns };
  } catch (e) {
    await removeLink(link.slot, undefined, scope);
    throw e;
  }
}

/**
 * Adds what a microVM needs to a namespace made by createLink: `tap0` for the VMM, NAT
 * between the fixed guest address and the sandbox's link address, and the guest's
 * resolver (its gateway, port 53) forwarded to the host end of the link.
 */
export async function addTap(netns: string, link: LinkAddresses): Promise<void> {
  await ip(
    ['-n', netns, '-batch', '-'],
    [
      'tuntap add dev tap0 mode tap',
      'link set tap0 addrgenmode none',
      // A fixed MAC too: a clone wakes with the template's ARP cache, which names the gateway's MAC.
      `link set tap0 address ${VM_GUEST.gatewayMac}`,
      `addr add ${VM_GUEST.gateway}/${VM_GUEST.prefix} dev tap0`,
      'link set tap0 up',
    ].join('\n'),
  );
  await inNetns(netns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  await inNetns(
    netns,
    ['nft', '-f', '-'],
    `table ip aiva-guest {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    iifname "eth0" ip daddr ${link.sandbox} dnat to ${VM_GUEST.address}
    iifname "tap0" ip daddr ${VM_GUEST.gateway} meta l4proto { tcp, udp } th dport 53 dnat to ${link.host}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat;
    oifname "eth0" ip saddr ${VM_GUEST.address} snat to ${link.sandbox}
  }
}
`,
  );
}

/** What the runtime and the guest need to know of a namespace made for `mode`. */
export function attachment(
  { netns, userns }: SandboxNamespaces,
  link: LinkAddresses,
  mode: AttachMode,
): SandboxNetworkAttachment {
  if (mode === 'tap') {
    return {
      netns,
      ...(userns ? { userns } : {}),
      address: link.sandbox,
      guest: {
        address: VM_GUEST.address,
        prefix: VM_GUEST.prefix,
        gateway: VM_GUEST.gateway,
        dns: VM_GUEST.gateway,
      },
      tap: 'tap0',
    };
  }
  return {
    netns,
    ...(userns ? { userns } : {}),
    address: link.sandbox,
    guest: { address: link.sandbox, prefix: link.prefix, gateway: link.host, dns: link.host },
  };
}

/** A namespace and link for one sandbox (createLink, plus addTap for microVMs). */
export async function createSandboxNetwork(
  link: LinkAddresses,
  mode: AttachMode,
  userNamespace = false,
  scope: HostScope = DEFAULT_HOST_SCOPE,
): Promise<SandboxNetworkAttachment> {
  const made = await createLink(link, userNamespace, scope);
  if (mode === 'tap') {
    try {
      await addTap(made.netns, link);
    } catch (e) {
      await removeLink(link.slot, made.netns, scope);
      throw e;
    }
  }
  return attachment(made, link, mode);
}

/**
 * Removes the namespace (with everything in it: the veth's inside end, TAP, NAT), the
 * user namespace pinned beside it, and the host end of the link. Idempotent. `netns` is the name recorded for the sandbox, if any
 * (older records named namespaces after the sandbox).
 */
export async function removeLink(
  slot: number,
  netns?: string,
  scope: HostScope = DEFAULT_HOST_SCOPE,
): Promise<void> {
  await ip(['link', 'del', hostLinkName(slot)]).catch(() => {});
  for (const name of new Set([scope.netnsName(slot), ...(netns ? [netns] : [])])) {
    await ip(['netns', 'del', name]).catch(() => {});
    await unpinNamespace(scope.userNamespaceFile(name));
  }
}
