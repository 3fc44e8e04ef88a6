import { mkdir, readdir } from 'node:fs/promises';
import { type Logger, pino } from 'pino';
import { runCommand } from '../host/command.js';
import { DEFAULT_HOST_SCOPE, type HostScope } from '../host/host-scope.js';
import { unpinNamespace } from '../host/idmapped-overlay.js';
import type { SandboxNetworkAttachment } from '../runtime/types.js';
import { AddressPool, type LinkAddresses } from './address-pool.js';
import {
  type DnsClient,
  DnsForwarder,
  parseUpstream,
  type ResolvedAnswer,
  systemResolvers,
} from './dns-forwarder.js';
import { Firewall, resolvedInTable } from './firewall.js';
import { IpForwarding } from './ip-forwarding.js';
import { NamespacePool } from './namespace-pool.js';
import {
  ALWAYS_BLOCKED,
  type CompiledPolicy,
  compilePolicy,
  domainMatches,
  type NetworkPolicy,
} from './network-policy.js';
import type { FirewallSandbox, ResolvedAddress, ResolvedSets } from './nft-ruleset.js';
import {
  type AttachMode,
  addTap,
  attachment,
  createLink,
  hostLinkName,
  removeLink,
  type SandboxNamespaces,
} from './sandbox-network.js';

export interface NetworkingOptions {
  /** IPv4 block cut into one /30 per sandbox (default 10.11.0.0/16). */
  addressBlock?: string;
  /** Namespaces kept ready ahead of creates (default 0: none). */
  poolSize?: number;
  /** Where the forwarder sends the sandboxes' queries: `a.b.c.d[:port]` (default: /etc/resolv.conf's nameservers). */
  dnsUpstreams?: string[];
  /**
   * What of the host is this node's (default: the host's only node's): namespace names,
   * user namespace pins and the runtime state (ip_forward.saved) under its `stateDir`,
   * and the host ids of its sandboxes.
   */
  scope?: HostScope;
  /**
   * Make every network namespace inside a user namespace of its own (for runtimes with
   * `capabilities.userNamespace`), whose host ids are its address slot's
   * (`HostScope.idRange`): unique among live sandboxes and found again from the record.
   */
  userNamespaces?: boolean;
  log?: Logger;
}

/** What the node holds of a sandbox's network. */
export interface SandboxNetworkRef {
  id: string;
  slot: number;
  network?: SandboxNetworkAttachment;
  policy?: NetworkPolicy;
}

/** An address slot set aside for a sandbox about to be created (with ready namespaces, if the pool had them). */
export interface NetworkReservation {
  link: LinkAddresses;
  namespaces?: SandboxNamespaces;
}

/** How long an address a domain rule resolved to stays in the firewall: its TTL, within these bounds (s). */
const RESOLVED_MIN_S = 60;
const RESOLVED_MAX_S = 86_400;
/** Answers remembered per sandbox (to apply a later policy to names it already resolved). */
const ANSWERS_KEPT = 512;

interface Attached {
  s: FirewallSandbox;
  link: LinkAddresses;
  /** Recent answers by question name: names of the chain, addresses, expiry (ms since epoch). */
  answers: Map<string, { names: string[]; addresses: string[]; expiresAt: number }>;
  /** Addresses found in the table on adoption (their names are unknown), kept until they expire. */
  inherited: ResolvedSets;
}

/**
 * Everything of the host's network that sandboxes use, owned by the node: address slots,
 * namespaces and links (with an optional pool of ready ones), aiva's nftables table, the
 * DNS forwarder, and IPv4 forwarding (on while sandboxes are attached, restored after).
 */
export class SandboxNetworking {
  readonly addresses: AddressPool;
  private readonly pool: NamespacePool;
  private readonly attached = new Map<string, Attached>();
  private readonly forwarding: IpForwarding;
  private readonly scope: HostScope;
  private firewall: Firewall | undefined;
  private dns: DnsForwarder | undefined;
  private readonly log: Logger;

  constructor(private readonly options: NetworkingOptions) {
    this.addresses = new AddressPool(options.addressBlock ?? '10.11.0.0/16');
    this.log = options.log ?? pino({ level: 'silent' });
    this.scope = options.scope ?? DEFAULT_HOST_SCOPE;
    if (options.userNamespaces) this.scope.idRange(this.addresses.size - 1); // every slot has ids
    this.pool = new NamespacePool(
      options.poolSize ?? 0,
      this.addresses,
      this.log,
      options.userNamespaces ?? false,
      this.scope,
    );
    this.forwarding = new IpForwarding(this.scope.stateDir);
    for (const u of options.dnsUpstreams ?? []) parseUpstream(u);
  }

  /** Marks a recorded sandbox's slot as taken (on start, before `start`). */
  claim(slot: number): void {
    this.addresses.claim(slot);
  }

  /**
   * Host setup once the node knows which sandboxes survived: removes namespaces and
   * links no sandbox owns, installs the table with the survivors (keeping the addresses
   * their domain rules had resolved), serves their DNS, sets forwarding, fills the pool.
   */
  async start(live: SandboxNetworkRef[]): Promise<void> {
    await mkdir(this.scope.stateDir, { recursive: true });
    await this.sweep(live);
    const upstreams = this.options.dnsUpstreams?.map(parseUpstream) ?? (await systemResolvers());
    this.dns = new DnsForwarder({ upstreams, log: this.log });
    const hostForwards = await this.forwarding.hostSetting();
    this.firewall = new Firewall({
      blocked: ALWAYS_BLOCKED.map((b) => b.cidr),
      sandboxBlock: this.addresses.cidr,
      confineForwarding: hostForwards === 0,
      resolved: (id) => this.resolved(id),
      log: this.log,
    });
    const inherited = await resolvedInTable();
    for (const r of live) {
      if (!r.network) continue;
      const link = this.addresses.addresses(r.slot);
      this.attached.set(r.id, {
        s: this.firewallEntry(r.id, link, compilePolicy(r.policy ?? {})),
        link,
        answers: new Map(),
        inherited: inherited.get(r.id) ?? { allow: [], deny: [] },
      });
    }
    await this.firewall.install(
      [...this.attached.values()].map((a) => ({ s: a.s, resolved: this.resolved(a.s.id) })),
    );
    for (const a of this.attached.values()) {
      await this.serveDns(a).catch((e: Error) =>
        this.log.warn({ sandbox: a.s.id, err: e }, 'cannot serve DNS to an adopted sandbox'),
      );
    }
    if (this.attached.size > 0) await this.forwarding.enable();
    else await this.forwarding.restore();
    this.pool.fill();
  }

  /**
   * Namespaces and links that carry our names but belong to no live sandbox. Namespaces
   * are files in /run/netns, seen by every node on the host: only the scope's names go
   * (`HostScope.sweepsNetns`). Links and the pins under the scope's state are this node's.
   */
  private async sweep(live: SandboxNetworkRef[]): Promise<void> {
    const { scope } = this;
    const ownedNetns = new Set(
      live.flatMap((r) => [scope.netnsName(r.slot), ...(r.network ? [r.network.netns] : [])]),
    );
    const ownedLinks = new Set(live.map((r) => hostLinkName(r.slot)));
    const { stdout: ns } = await runCommand('ip', ['netns', 'list']).catch(() => ({ stdout: '' }));
    for (const line of ns.split('\n')) {
      const name = line.split(' ')[0] ?? '';
      if (scope.sweepsNetns(name) && !ownedNetns.has(name)) {
        this.log.warn({ netns: name }, 'removing an orphaned network namespace');
        await runCommand('ip', ['netns', 'del', name]).catch(() => {});
      }
    }
    // User namespaces pinned beside network namespaces (of their names) no sandbox owns.
    for (const name of await readdir(scope.userNamespaceDir).catch(() => [] as string[])) {
      if (!ownedNetns.has(name)) {
        this.log.warn({ userns: name }, 'removing an orphaned user namespace');
        await unpinNamespace(scope.userNamespaceFile(name)).catch(() => {});
      }
    }
    const { stdout: links } = await runCommand('ip', ['-o', 'link', 'show']).catch(() => ({ stdout: '' }));
    for (const line of links.split('\n')) {
      const name = line.split(': ')[1]?.split('@')[0] ?? '';
      if (/^aiva\d+$/.test(name) && !ownedLinks.has(name)) {
        this.log.warn({ link: name }, 'removing an orphaned sandbox link');
        await runCommand('ip', ['link', 'del', name]).catch(() => {});
      }
    }
  }

  /** Sets an address slot aside for a new sandbox, with a pooled namespace if one is ready. Synchronous. */
  reserve(): NetworkReservation {
    const pooled = this.pool.take();
    if (pooled) return { link: pooled.link, namespaces: pooled.namespaces };
    return { link: this.addresses.allocate() };
  }

  /** Gives a reservation back unused (a create that failed before `attach`). */
  async unreserve(r: NetworkReservation): Promise<void> {
    if (r.namespaces) await removeLink(r.link.slot, r.namespaces.netns, this.scope);
    this.addresses.release(r.link.slot);
  }

  private firewallEntry(id: string, link: LinkAddresses, policy: CompiledPolicy): FirewallSandbox {
    return { id, hostIf: hostLinkName(link.slot), address: link.sandbox, policy };
  }

  private mustBeStarted(): { firewall: Firewall; dns: DnsForwarder } {
    if (!this.firewall || !this.dns) throw new Error('sandbox networking is not started');
    return { firewall: this.firewall, dns: this.dns };
  }

  /**
   * Makes the sandbox's network ready before it starts: its namespace (from the pool or
   * made now), the TAP for a microVM, its firewall chain with `policy`, its resolver.
   * On failure everything made here is removed (the slot stays reserved: `detach` frees it).
   */
  async attach(
    id: string,
    reservation: NetworkReservation,
    mode: AttachMode,
    policy: NetworkPolicy,
  ): Promise<SandboxNetworkAttachment> {
    const { firewall } = this.mustBeStarted();
    const { link } = reservation;
    const namespaces =
      reservation.namespaces ?? (await createLink(link, this.options.userNamespaces ?? false, this.scope));
    const { netns } = namespaces;
    const a: Attached = {
      s: this.firewallEntry(id, link, compilePolicy(policy)),
      link,
      answers: new Map(),
      inherited: { allow: [], deny: [] },
    };
    try {
      if (mode === 'tap') await addTap(netns, link);
      await firewall.addSandbox(a.s);
      this.attached.set(id, a);
      await this.serveDns(a);
      if (this.attached.size === 1) await this.forwarding.enable();
    } catch (e) {
      await this.detach(
        { id, slot: link.slot, network: { netns } as SandboxNetworkAttachment },
        { release: false },
      );
      throw e;
    }
    return attachment(namespaces, link, mode);
  }

  private serveDns(a: Attached): Promise<void> {
    const { dns } = this.mustBeStarted();
    const client: DnsClient = {
      answers: () => a.s.policy.dns,
      onAnswer: (answer) => this.onAnswer(a, answer),
    };
    return dns.listen(a.s.id, a.link.host, a.link.sandbox, client);
  }

  /** Replaces a sandbox's policy, live. */
  async updatePolicy(id: string, policy: NetworkPolicy): Promise<void> {
    const { firewall } = this.mustBeStarted();
    const a = this.attached.get(id);
    if (!a) throw new Error(`sandbox ${id} has no network`);
    a.s = { ...a.s, policy: compilePolicy(policy) };
    await firewall.updatePolicy(a.s);
  }

  /**
   * Removes the sandbox's firewall chain, resolver and namespace, and frees its slot
   * (unless `release` is false). Idempotent; works on partial state.
   */
  async detach(ref: SandboxNetworkRef, options: { release?: boolean } = {}): Promise<void> {
    const had = this.attached.delete(ref.id);
    await this.dns?.unlisten(ref.id);
    await this.firewall?.removeSandbox(ref.id);
    await removeLink(ref.slot, ref.network?.netns, this.scope);
    if (options.release !== false) this.addresses.release(ref.slot);
    if (had && this.attached.size === 0) await this.forwarding.restore();
  }

  /**
   * Bytes the sandbox has sent out of the host (its firewall's egress counter; see
   * nft-ruleset.ts), or undefined if it has no network here or the counter cannot be read.
   */
  async egressBytes(id: string): Promise<number | undefined> {
    if (!this.firewall?.has(id)) return undefined;
    try {
      return (await this.firewall.egressBytes()).get(id);
    } catch (e) {
      this.log.warn({ sandbox: id, err: e }, 'cannot read the egress counters');
      return undefined;
    }
  }

  /** Remembers the answer and puts its addresses in the sandbox's allow/deny name sets if a rule names it. */
  private async onAnswer(a: Attached, answer: ResolvedAnswer): Promise<void> {
    if (answer.addresses.length === 0) return;
    const timeoutS = Math.min(RESOLVED_MAX_S, Math.max(RESOLVED_MIN_S, answer.ttl));
    const key = answer.names[0] ?? '';
    a.answers.delete(key);
    a.answers.set(key, {
      names: answer.names,
      addresses: answer.addresses,
      expiresAt: Date.now() + timeoutS * 1000,
    });
    if (a.answers.size > ANSWERS_KEPT) a.answers.delete(a.answers.keys().next().value as string);
    const timed: ResolvedAddress[] = answer.addresses.map((address) => ({ address, timeoutS }));
    const matches = (patterns: string[]) =>
      answer.names.some((n) => patterns.some((p) => domainMatches(p, n)));
    if (matches(a.s.policy.allowNames)) await this.firewall?.addResolved(a.s.id, 'allow', timed);
    if (matches(a.s.policy.denyNames)) await this.firewall?.addResolved(a.s.id, 'deny', timed);
  }

  /** What a sandbox's name sets should hold under its current policy. */
  private resolved(id: string): ResolvedSets {
    const a = this.attached.get(id);
    const out: ResolvedSets = { allow: [], deny: [] };
    if (!a) return out;
    const now = Date.now();
    for (const e of a.answers.values()) {
      const left = (e.expiresAt - now) / 1000;
      if (left < 1) continue;
      const matches = (patterns: string[]) => e.names.some((n) => patterns.some((p) => domainMatches(p, n)));
      for (const kind of ['allow', 'deny'] as const) {
        if (matches(kind === 'allow' ? a.s.policy.allowNames : a.s.policy.denyNames)) {
          out[kind].push(...e.addresses.map((address) => ({ address, timeoutS: left })));
        }
      }
    }
    for (const kind of ['allow', 'deny'] as const) {
      for (const r of a.inherited[kind])
        if (!out[kind].some((x) => x.address === r.address)) out[kind].push(r);
    }
    // An address may come from several answers: keep its longest timeout.
    for (const kind of ['allow', 'deny'] as const) {
      const best = new Map<string, ResolvedAddress>();
      for (const r of out[kind])
        if ((best.get(r.address)?.timeoutS ?? 0) < r.timeoutS) best.set(r.address, r);
      out[kind] = [...best.values()];
    }
    return out;
  }

  /** Waits until the pool is full (tests and benchmarks). */
  poolFilled(): Promise<void> {
    return this.pool.filled();
  }

  get pooled(): number {
    return this.pool.available;
  }

  /**
   * Stops the node's part: the pool's namespaces are removed and the forwarder stops.
   * With no sandbox attached, the table goes and forwarding is restored too; otherwise
   * both stay for the sandboxes that keep running, and the next node's `start` takes over.
   */
  async close(): Promise<void> {
    await this.pool.close();
    await this.dns?.close();
    if (this.attached.size === 0) {
      await this.firewall?.remove();
      await this.forwarding.restore();
    }
    this.attached.clear();
  }
}
