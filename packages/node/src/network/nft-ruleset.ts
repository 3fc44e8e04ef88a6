import type { CompiledPolicy } from './network-policy.js';

/**
 * The text of aiva's nftables table, `inet aiva`, and of the transactions that change it
 * (`nft -f -` applies each one atomically). Pure functions: nothing here runs nft.
 *
 * Layout, and why the cost stays flat however many sandboxes run:
 * - `prerouting` (filter, priority mangle: after conntrack, before any DNAT) sends every
 *   packet that enters from a sandbox link (`aiva<slot>`) through one verdict-map lookup
 *   by input interface to that sandbox's chain `sb-<id>`; non-IPv4 traffic and links that
 *   no sandbox owns (pooled namespaces, debris) are dropped.
 * - `sb-<id>`: anti-spoofing (source must be the sandbox's link address), DNS beyond
 *   200 queries (20 new TCP connections) a second dropped (`limit`), replies to
 *   connections the host or the sandbox opened, DNS (redirected to the node's forwarder
 *   whatever address it was sent to), then nothing of the host's own addresses (`fib daddr
 *   type local`) nor of `@blocked` (other sandboxes, private, link-local, …), then the
 *   policy: `@sb-<id>-allow` and `-allowname` accept, `-deny` and `-denyname` drop,
 *   otherwise accept. The policy lives in the four named sets, so replacing it is a set
 *   flush and reload; the chain itself never changes.
 * - `dns` (nat prerouting) redirects port 53 from sandbox links to the link's host end.
 * - `forward`: nothing new is forwarded into a sandbox link (only replies); if aiva turned
 *   forwarding on, it forwards nothing that does not come from a sandbox either.
 * - `postrouting` masquerades sandbox traffic that leaves by a non-sandbox interface.
 * - `egress` (filter postrouting, just before the masquerade) counts, per sandbox, the
 *   bytes it sends out of the host: every packet that entered from a sandbox link and
 *   leaves by another interface adds its length (IP header included) to the sandbox's
 *   named counter `sb-<id>-egress`, found through the map `egress` by input interface.
 *   Counting here rather than in `sb-<id>` means only what was accepted all the way is
 *   counted: a packet dropped by the sandbox's chain (spoofed, blocked, denied, the DNS
 *   limit), by `forward` or by any other table never reaches postrouting, and what goes
 *   to the host itself (DNS to the forwarder, the host's own addresses: both are
 *   delivered locally) does not pass postrouting at all. Replies to connections the host
 *   opened into the sandbox (the proxy, envd) go to the link's host end: local too. The
 *   counter is made with the sandbox's chain and deleted in the same transaction as it
 *   (after its map entry, which holds a reference to it); a whole-table install carries
 *   its value over (`egress` of `wholeTableScript`), so a node restart does not reset it.
 */

export const TABLE = 'aiva';
const T = `inet ${TABLE}`;

/** One sandbox's entry in the table. */
export interface FirewallSandbox {
  id: string;
  /** The host end of its link: the input interface its packets arrive by. */
  hostIf: string;
  /** Its link address: the only source address it may use. */
  address: string;
  policy: CompiledPolicy;
}

/** An address a domain rule resolved to, kept until it expires. */
export interface ResolvedAddress {
  address: string;
  /** Seconds from now. */
  timeoutS: number;
}

export interface ResolvedSets {
  allow: ResolvedAddress[];
  deny: ResolvedAddress[];
}

export interface TableOptions {
  /** Address blocks sandboxes may never reach. */
  blocked: string[];
  /** The block sandbox links are cut from (its traffic is masqueraded). */
  sandboxBlock: string;
  /** Drop forwarded traffic that does not come from a sandbox (aiva turned forwarding on). */
  confineForwarding: boolean;
}

export const sandboxChain = (id: string) => `sb-${id}`;
/** The named counter of the bytes a sandbox sent out of the host. */
export const egressCounter = (id: string) => `sb-${id}-egress`;
/** A sandbox id from its egress counter's name; undefined for any other name. */
export const egressCounterOwner = (name: string): string | undefined =>
  /^sb-([a-z0-9]+)-egress$/.exec(name)?.[1];
export const sandboxSet = (id: string, kind: 'allow' | 'deny' | 'allowname' | 'denyname') =>
  `sb-${id}-${kind}`;

const elements = (items: string[]) => `{ ${items.join(', ')} }`;
const timed = (items: ResolvedAddress[]) =>
  items.map((r) => `${r.address} timeout ${Math.max(1, Math.ceil(r.timeoutS))}s`);

/** DNS queries (UDP) a sandbox may send per second, and new DNS connections (TCP). */
export const DNS_QUERIES_PER_S = 200;
export const DNS_TCP_CONNECTIONS_PER_S = 20;

/** The base table, in `nft -f` block syntax. */
function baseTable(o: TableOptions): string {
  return `table ${T} {
  set blocked {
    type ipv4_addr; flags interval; auto-merge;
    elements = ${elements([...o.blocked, o.sandboxBlock])}
  }
  map sandboxes {
    type ifname : verdict;
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname "aiva*" meta nfproto != ipv4 drop
    iifname "aiva*" iifname vmap @sandboxes
    iifname "aiva*" drop
  }
  chain dns {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "aiva*" meta l4proto { tcp, udp } th dport 53 redirect
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    oifname "aiva*" ct state established,related accept
    oifname "aiva*" drop
${o.confineForwarding ? '    iifname != "aiva*" drop\n' : ''}  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${o.sandboxBlock} oifname != "aiva*" masquerade
  }
  map egress {
    type ifname : counter;
  }
  chain egress {
    type filter hook postrouting priority srcnat - 1; policy accept;
    iifname "aiva*" oifname != "aiva*" counter name iifname map @egress
  }
}
`;
}

function setLines(id: string, p: CompiledPolicy, resolved: ResolvedSets): string[] {
  const lines: string[] = [];
  for (const kind of ['allow', 'deny'] as const) {
    const set = `${T} ${sandboxSet(id, kind)}`;
    const cidrs = kind === 'allow' ? p.allowCidrs : p.denyCidrs;
    lines.push(`flush set ${set}`);
    if (cidrs.length > 0) lines.push(`add element ${set} ${elements(cidrs)}`);
    const named = `${T} ${sandboxSet(id, `${kind}name`)}`;
    lines.push(`flush set ${named}`);
    const r = resolved[kind];
    if (r.length > 0) lines.push(`add element ${named} ${elements(timed(r))}`);
  }
  return lines;
}

/** What a counter has counted (to carry it over a whole-table install). */
export interface CounterValue {
  packets: number;
  bytes: number;
}

/**
 * Adds a sandbox: its sets, its chain, its egress counter (starting from `egress`, or
 * kept as it is if it exists), and its link's entries in the verdict map and the
 * egress map.
 */
export function addSandboxScript(
  s: FirewallSandbox,
  resolved: ResolvedSets = { allow: [], deny: [] },
  egress?: CounterValue,
): string {
  const c = `${T} ${sandboxChain(s.id)}`;
  const set = (k: Parameters<typeof sandboxSet>[1]) => `@${sandboxSet(s.id, k)}`;
  const lines = [
    `add set ${T} ${sandboxSet(s.id, 'allow')} { type ipv4_addr; flags interval; auto-merge; }`,
    `add set ${T} ${sandboxSet(s.id, 'deny')} { type ipv4_addr; flags interval; auto-merge; }`,
    `add set ${T} ${sandboxSet(s.id, 'allowname')} { type ipv4_addr; flags timeout; }`,
    `add set ${T} ${sandboxSet(s.id, 'denyname')} { type ipv4_addr; flags timeout; }`,
    ...setLines(s.id, s.policy, resolved),
    `add chain ${c}`,
    `flush chain ${c}`,
    `add rule ${c} ip saddr != ${s.address} drop`,
    // The node's DNS forwarder serves every sandbox from one event loop: a sandbox's
    // flood is dropped here, in the kernel, beyond DNS_QUERIES_PER_S (before the
    // established rule: a flood from one socket is one conntrack entry).
    `add rule ${c} udp dport 53 limit rate over ${DNS_QUERIES_PER_S}/second burst ${DNS_QUERIES_PER_S * 2} packets drop`,
    `add rule ${c} tcp dport 53 ct state new limit rate over ${DNS_TCP_CONNECTIONS_PER_S}/second burst ${DNS_TCP_CONNECTIONS_PER_S * 2} packets drop`,
    `add rule ${c} ct state established,related accept`,
    `add rule ${c} meta l4proto { tcp, udp } th dport 53 accept`,
    `add rule ${c} fib daddr type local drop`,
    `add rule ${c} ip daddr @blocked drop`,
    `add rule ${c} ip daddr ${set('allow')} accept`,
    `add rule ${c} ip daddr ${set('allowname')} accept`,
    `add rule ${c} ip daddr ${set('deny')} drop`,
    `add rule ${c} ip daddr ${set('denyname')} drop`,
    `add rule ${c} accept`,
    `add counter ${T} ${egressCounter(s.id)}${egress ? ` { packets ${egress.packets} bytes ${egress.bytes} }` : ''}`,
    `add element ${T} egress { "${s.hostIf}" : "${egressCounter(s.id)}" }`,
    `add element ${T} sandboxes { "${s.hostIf}" : jump ${sandboxChain(s.id)} }`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Replaces a sandbox's policy: its four sets, in one transaction. */
export function updatePolicyScript(s: FirewallSandbox, resolved: ResolvedSets): string {
  return `${setLines(s.id, s.policy, resolved).join('\n')}\n`;
}

/**
 * Removes a sandbox's map entries, chain, sets and egress counter (after the egress map's
 * entry: a counter a map refers to cannot be deleted).
 */
export function removeSandboxScript(s: Pick<FirewallSandbox, 'id' | 'hostIf'>): string {
  const c = `${T} ${sandboxChain(s.id)}`;
  return `${[
    `delete element ${T} sandboxes { "${s.hostIf}" }`,
    `delete element ${T} egress { "${s.hostIf}" }`,
    `flush chain ${c}`,
    `delete chain ${c}`,
    ...(['allow', 'deny', 'allowname', 'denyname'] as const).map(
      (k) => `delete set ${T} ${sandboxSet(s.id, k)}`,
    ),
    `delete counter ${T} ${egressCounter(s.id)}`,
  ].join('\n')}\n`;
}

/**
 * Adds resolved addresses to a sandbox's `allowname` or `denyname` set, restarting the
 * timeout of those already there (add, delete, add: an element's timeout cannot be changed in place).
 */
export function addResolvedScript(id: string, kind: 'allow' | 'deny', resolved: ResolvedAddress[]): string {
  const set = `${T} ${sandboxSet(id, `${kind}name`)}`;
  const plain = resolved.map((r) => r.address);
  return `${[
    `add element ${set} ${elements(plain)}`,
    `delete element ${set} ${elements(plain)}`,
    `add element ${set} ${elements(timed(resolved))}`,
  ].join('\n')}\n`;
}

/**
 * The whole table with every sandbox in it, replacing whatever table of that name
 * exists, atomically (`add table` first so that `delete table` cannot fail); each
 * sandbox's egress counter starts from its `egress` (what the table replaced had counted).
 */
export function wholeTableScript(
  o: TableOptions,
  sandboxes: { s: FirewallSandbox; resolved: ResolvedSets; egress?: CounterValue }[],
): string {
  return [
    `add table ${T}`,
    `delete table ${T}`,
    baseTable(o),
    ...sandboxes.map(({ s, resolved, egress }) => addSandboxScript(s, resolved, egress)),
  ].join('\n');
}

/** Removes the table (`add` first so that it cannot fail when there is none). */
export function deleteTableScript(): string {
  return `add table ${T}\ndelete table ${T}\n`;
}
