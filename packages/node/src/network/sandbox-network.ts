import { runCommand } from '../host/command.js';
import type { SandboxNetworkAttachment } from '../runtime/types.js';
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

/** Namespaces are named by address slot, so that one can be made before its sandbox exists (the pool). */
export const netnsName = (slot: number) => `aiva-n${slot}`;
export const hostLinkName = (slot: number) => `aiva${slot}`;

const ip = (args: string[], input?: string) => runCommand('ip', args, { input });
const inNetns = (netns: string, argv: string[], input?: string) =>
  runCommand('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { input });

/**
 * Creates a network namespace and its point-to-point link to the host (a veth pair:
 * `aiva<slot>` on the host, `eth0` inside, the namespace's default route via the host
 * end). No IPv6: neither end gets a link-local address. On failure everything made so
 * far is removed. Returns the namespace's name.
 */
export async function createLink(link: LinkAddresses): Promise<string> {
  const netns = netnsName(link.slot);
  const hostIf = hostLinkName(link.slot);
  try {
    await ip(['netns', 'add', netns]);
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
    return netns;
  } catch (e) {
    await removeLink(link.slot);
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
export function attachment(netns: string, link: LinkAddresses, mode: AttachMode): SandboxNetworkAttachment {
  if (mode === 'tap') {
    return {
      netns,
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
    address: link.sandbox,
    guest: { address: link.sandbox, prefix: link.prefix, gateway: link.host, dns: link.host },
  };
}

/** A namespace and link for one sandbox (createLink, plus addTap for microVMs). */
export async function createSandboxNetwork(
  link: LinkAddresses,
  mode: AttachMode,
): Promise<SandboxNetworkAttachment> {
  const netns = await createLink(link);
  if (mode === 'tap') {
    try {
      await addTap(netns, link);
    } catch (e) {
      await removeLink(link.slot, netns);
      throw e;
    }
  }
  return attachment(netns, link, mode);
}

/**
 * Removes the namespace (with everything in it: the veth's inside end, TAP, NAT) and the
 * host end of the link. Idempotent. `netns` is the name recorded for the sandbox, if any
 * (older records named namespaces after the sandbox).
 */
export async function removeLink(slot: number, netns?: string): Promise<void> {
  await ip(['link', 'del', hostLinkName(slot)]).catch(() => {});
  for (const name of new Set([netnsName(slot), ...(netns ? [netns] : [])])) {
    await ip(['netns', 'del', name]).catch(() => {});
  }
}
