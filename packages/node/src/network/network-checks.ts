import { access, readFile } from 'node:fs/promises';
import { runCommand } from '../host/command.js';
import { systemResolvers } from './dns-forwarder.js';
import { IpForwarding } from './ip-forwarding.js';
import { cidrOverlaps, parseCidr } from './ipv4.js';

/** One network prerequisite of sandboxes, as `aiva doctor` shows it. */
export interface NetworkCheck {
  name: string;
  ok: boolean;
  detail: string;
  /** What to install or change. */
  fix?: string;
}

async function firstLine(cmd: string, args: string[]): Promise<string | undefined> {
  try {
    const { stdout, stderr } = await runCommand(cmd, args);
    return (stdout || stderr).split('\n')[0]?.trim();
  } catch {
    return undefined;
  }
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

/** A table using every nftables feature aiva's needs, checked (`nft -c`) in a throwaway network namespace. */
const PROBE = `table inet aiva-probe {
  set s { type ipv4_addr; flags interval; auto-merge; elements = { 10.0.0.0/8 } }
  set t { type ipv4_addr; flags timeout; }
  map m { type ifname : verdict; }
  chain c { fib daddr type local drop; ip daddr @s drop; ip daddr @t accept; ct state established accept; }
  chain p { type filter hook prerouting priority mangle; iifname vmap @m; }
  chain d { type nat hook prerouting priority dstnat; meta l4proto { tcp, udp } th dport 53 redirect; }
  chain n { type nat hook postrouting priority srcnat; ip saddr 10.11.0.0/16 masquerade; }
  counter k { }
  map e { type ifname : counter; elements = { "aiva0" : "k" } }
  chain o { type filter hook postrouting priority srcnat - 1; iifname "aiva*" counter name iifname map @e; }
}
`;

/**
 * What sandbox networking needs of the host: the tools aiva shells out to, the kernel's
 * nftables features, network namespaces and TUN, the state of IPv4 forwarding, a
 * resolver for the DNS forwarder to ask, and an address block that collides with no
 * route of the host's. Changes nothing on the host.
 */
export async function checkNetwork(options: { addressBlock?: string } = {}): Promise<NetworkCheck[]> {
  const block = options.addressBlock ?? '10.11.0.0/16';
  const [nft, ip, nsenter, conntrack, sysctl] = await Promise.all([
    firstLine('nft', ['--version']),
    firstLine('ip', ['-V']),
    firstLine('nsenter', ['--version']),
    firstLine('conntrack', ['--version']),
    firstLine('sysctl', ['--version']),
  ]);
  const checks: NetworkCheck[] = [];
  const tool = (name: string, version: string | undefined, pkg: string, why: string) =>
    checks.push({
      name,
      ok: Boolean(version),
      detail: version ? `${version} (${why})` : `${name} is not installed (${why})`,
      fix: version ? undefined : `apt-get install ${pkg}`,
    });
  tool('nft', nft, 'nftables', 'the sandbox firewall and NAT');
  tool('ip', ip, 'iproute2', 'namespaces, links, TAP');
  tool('nsenter', nsenter, 'util-linux', 'running tools inside a sandbox namespace');
  tool('conntrack', conntrack, 'conntrack', 'live policy updates judge open connections again');
  tool('sysctl', sysctl, 'procps', 'IPv4 forwarding');

  if (nft) {
    const probe = await runCommand('unshare', ['--net', 'nft', '-c', '-f', '-'], { input: PROBE }).then(
      () => undefined,
      (e: Error) => e.message.split('\n').slice(-3).join(' '),
    );
    checks.push({
      name: 'nftables features',
      ok: !probe,
      detail: probe
        ? `the kernel refused aiva's rule set: ${probe}`
        : 'inet tables, interval and timeout sets, verdict and counter maps, fib, conntrack, redirect, masquerade',
      fix: probe
        ? 'use a kernel with nf_tables, nft_fib, nft_ct, nft_nat, nft_masq and nft_redir'
        : undefined,
    });
  }

  const netns = await exists('/proc/self/ns/net');
  checks.push({
    name: 'network namespaces',
    ok: netns,
    detail: netns ? 'supported' : 'the kernel has no network namespaces',
    fix: netns ? undefined : 'use a kernel built with CONFIG_NET_NS',
  });
  const tun = await exists('/dev/net/tun');
  checks.push({
    name: '/dev/net/tun',
    ok: tun,
    detail: tun ? 'present (microVM TAP devices)' : 'missing: microVMs cannot get a TAP device',
    fix: tun ? undefined : 'modprobe tun',
  });

  const forwarding = new IpForwarding('/run/aiva');
  const now = await IpForwarding.current();
  const saved = await forwarding.savedValue();
  checks.push({
    name: 'IPv4 forwarding',
    ok: true,
    detail:
      saved !== undefined
        ? `on, turned on by aiva while sandboxes run (was ${saved}; restored when the last sandbox ends)`
        : now === 1
          ? 'on (set by the host; aiva leaves it as it is)'
          : 'off; aiva turns it on while sandboxes run (forwarding only their traffic) and restores it',
  });

  const resolvers = await systemResolvers();
  checks.push({
    name: 'upstream resolver',
    ok: resolvers.length > 0,
    detail:
      resolvers.length > 0
        ? `${resolvers.map((r) => r.host).join(', ')} (from /etc/resolv.conf; sandboxes ask aiva's forwarder, which asks these)`
        : 'no IPv4 nameserver in /etc/resolv.conf: sandboxes cannot resolve names',
    fix: resolvers.length > 0 ? undefined : 'add an IPv4 nameserver to /etc/resolv.conf, or set dnsUpstreams',
  });

  const ours = parseCidr(block);
  const { stdout: routes } = await runCommand('ip', ['-4', 'route', 'show', 'table', 'all']).catch(() => ({
    stdout: '',
  }));
  const clashes = routes
    .split('\n')
    .filter(
      (l) =>
        !/ dev aiva\d+ /.test(l) &&
        !l.startsWith('default') &&
        !l.startsWith('local ') &&
        !l.startsWith('broadcast '),
    )
    .map((l) => l.split(' ')[0] ?? '')
    .filter((dst) => {
      const c = parseCidr(dst);
      return c && ours && cidrOverlaps(c, ours);
    });
  checks.push({
    name: 'sandbox address block',
    ok: clashes.length === 0,
    detail:
      clashes.length === 0
        ? `${block}: no route of the host's overlaps it`
        : `${block} overlaps the host's routes to ${[...new Set(clashes)].join(', ')}`,
    fix: clashes.length === 0 ? undefined : 'choose another block (addressBlock)',
  });

  const ruleset = await runCommand('nft', ['list', 'ruleset']).then(
    (r) => r.stdout,
    () => '',
  );
  const dropsForward = /hook forward priority [^;]+; policy drop;/.test(ruleset);
  const others = await readFile('/proc/net/ip_tables_names', 'utf8').catch(() => '');
  checks.push({
    name: 'other firewalls',
    ok: !dropsForward,
    detail: dropsForward
      ? 'another table drops forwarded traffic by default: sandboxes will not reach the internet unless it accepts traffic from aiva* links'
      : `no other table drops forwarded traffic${others.trim() ? ' (legacy iptables tables present: check their FORWARD chain)' : ''}`,
    fix: dropsForward ? 'accept forwarded traffic from and to interfaces aiva* in that table' : undefined,
  });
  return checks;
}
