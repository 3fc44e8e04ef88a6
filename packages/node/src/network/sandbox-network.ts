import { runCommand } from '../host/command.js';
import type { SandboxNetworkAttachment } from '../runtime/types.js';
import type { LinkAddresses } from './address-pool.js';

/**
 * Inside a microVM's namespace the guest always has the same address, so that clones
 * of one memory snapshot never collide; the namespace translates it to the sandbox's
 * own link address.
 */
export const VM_GUEST = { address: '169.254.0.21', gateway: '169.254.0.22', prefix: 30 } as const;

/** How the sandbox joins its namespace: a container lives in it, a microVM behind a TAP in it. */
export type AttachMode = 'namespace' | 'tap';

export const netnsName = (id: string) => `aiva-${id}`;
export const hostLinkName = (slot: number) => `aiva${slot}`;

const ip = (args: string[], input?: string) => runCommand('ip', args, { input });
const inNetns = (netns: string, argv: string[], input?: string) =>
  runCommand('nsenter', [`--net=/run/netns/${netns}`, '--', ...argv], { input });

/**
 * Creates the sandbox's network namespace and its point-to-point link to the host
 * (a veth pair: `aiva<slot>` on the host, `eth0` inside). For `tap` mode the namespace
 * also gets `tap0` for the microVM and NAT between the fixed guest address and the
 * sandbox's link address. On failure everything made so far is removed.
 */
export async function createSandboxNetwork(
  id: string,
  link: LinkAddresses,
  mode: AttachMode,
): Promise<SandboxNetworkAttachment> {
  const netns = netnsName(id);
  const hostIf = hostLinkName(link.slot);
  try {
    await ip(['netns', 'add', netns]);
    await ip(
      ['-batch', '-'],
      [
        `link add ${hostIf} type veth peer name eth0 netns ${netns}`,
        `addr add ${link.host}/${link.prefix} dev ${hostIf}`,
        `link set ${hostIf} up`,
      ].join('\n'),
    );
    const inside = [
      'link set lo up',
      `addr add ${link.sandbox}/${link.prefix} dev eth0`,
      'link set eth0 up',
      `route add default via ${link.host}`,
    ];
    if (mode === 'tap') {
      inside.push(
        'tuntap add dev tap0 mode tap',
        `addr add ${VM_GUEST.gateway}/${VM_GUEST.prefix} dev tap0`,
        'link set tap0 up',
      );
    }
    await ip(['-n', netns, '-batch', '-'], inside.join('\n'));
    if (mode === 'tap') {
      await inNetns(netns, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
      await inNetns(
        netns,
        ['nft', '-f', '-'],
        `table ip aiva-guest {
  chain prerouting {
    type nat hook prerouting priority dstnat;
    iifname "eth0" ip daddr ${link.sandbox} dnat to ${VM_GUEST.address}
  }
  chain postrouting {
    type nat hook postrouting priority srcnat;
    oifname "eth0" ip saddr ${VM_GUEST.address} snat to ${link.sandbox}
  }
}
`,
      );
      return {
        netns,
        address: link.sandbox,
        guest: { address: VM_GUEST.address, prefix: VM_GUEST.prefix, gateway: VM_GUEST.gateway },
        tap: 'tap0',
      };
    }
    return {
      netns,
      address: link.sandbox,
      guest: { address: link.sandbox, prefix: link.prefix, gateway: link.host },
    };
  } catch (e) {
    await removeSandboxNetwork(id, link.slot);
    throw e;
  }
}

/** Removes the namespace and the host end of the link. Idempotent. */
export async function removeSandboxNetwork(id: string, slot: number): Promise<void> {
  await ip(['link', 'del', hostLinkName(slot)]).catch(() => {});
  await ip(['netns', 'del', netnsName(id)]).catch(() => {});
}
