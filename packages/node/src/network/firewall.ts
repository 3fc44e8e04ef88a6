import type { Logger } from 'pino';
import { CommandError, runCommand } from '../host/command.js';
import {
  addResolvedScript,
  addSandboxScript,
  type CounterValue,
  deleteTableScript,
  egressCounterOwner,
  type FirewallSandbox,
  type ResolvedAddress,
  type ResolvedSets,
  removeSandboxScript,
  sandboxSet,
  TABLE,
  type TableOptions,
  updatePolicyScript,
  wholeTableScript,
} from './nft-ruleset.js';

/** Whether aiva's table exists on this host. */
export async function firewallTableExists(): Promise<boolean> {
  const { stdout } = await runCommand('nft', ['list', 'tables', 'inet']);
  return stdout.split('\n').some((l) => l.trim() === `table inet ${TABLE}`);
}

interface NftJsonSet {
  set?: { name: string; elem?: ({ elem: { val: string; expires?: number } } | string)[] };
}

/**
 * Addresses already in the `allowname`/`denyname` sets of the table on the host (left by
 * a node that stopped or crashed), with what remains of their timeouts, by sandbox id.
 */
export async function resolvedInTable(): Promise<Map<string, ResolvedSets>> {
  const out = new Map<string, ResolvedSets>();
  if (!(await firewallTableExists())) return out;
  const { stdout } = await runCommand('nft', ['-j', 'list', 'sets', 'table', 'inet', TABLE]);
  const sets = (JSON.parse(stdout) as { nftables: NftJsonSet[] }).nftables;
  for (const { set } of sets) {
    const m = set?.name.match(/^sb-([a-z0-9]+)-(allow|deny)name$/);
    if (!set || !m?.[1] || !m[2]) continue;
    const id = m[1];
    const kind = m[2] as 'allow' | 'deny';
    const entry = out.get(id) ?? { allow: [], deny: [] };
    for (const e of set.elem ?? []) {
      if (typeof e === 'string') continue;
      entry[kind].push({ address: e.elem.val, timeoutS: Math.max(1, e.elem.expires ?? 1) });
    }
    out.set(id, entry);
  }
  return out;
}

interface NftJsonCounter {
  counter?: { name: string; packets: number; bytes: number };
}

/** The egress counters in the table on the host, by sandbox id (none without a table). */
export async function egressInTable(): Promise<Map<string, CounterValue>> {
  return (await firewallTableExists()) ? listEgressCounters() : new Map();
}

/** The egress counters in the table, by sandbox id: one `nft` call (the table must exist). */
async function listEgressCounters(): Promise<Map<string, CounterValue>> {
  const out = new Map<string, CounterValue>();
  const { stdout } = await runCommand('nft', ['-j', 'list', 'counters', 'table', 'inet', TABLE]);
  for (const { counter } of (JSON.parse(stdout) as { nftables: NftJsonCounter[] }).nftables) {
    const id = counter && egressCounterOwner(counter.name);
    if (counter && id) out.set(id, { packets: counter.packets, bytes: counter.bytes });
  }
  return out;
}

/** How long one reading of the egress counters serves (a sampling round asks once per sandbox). */
export const EGRESS_READING_MS = 1000;

/**
 * aiva's nftables table (`inet aiva`, see nft-ruleset.ts): installs it whole, adds and
 * removes sandboxes and replaces their policies, each change one `nft -f -` transaction,
 * one at a time. Knows which sandboxes it holds, so that a change that fails (the table
 * was altered behind its back) is repaired by reinstalling the whole table.
 */
export class Firewall {
  private readonly sandboxes = new Map<string, FirewallSandbox>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The latest reading of the egress counters (or the one under way) and when it began. */
  private egressReading: { at: number; counters: Promise<Map<string, CounterValue>> } | undefined;

  constructor(
    private readonly options: TableOptions & {
      /** What a sandbox's name sets hold now (for a reinstall). */
      resolved: (id: string) => ResolvedSets;
      log: Logger;
    },
  ) {}

  private run<T>(op: () => Promise<T>): Promise<T> {
    const next = this.queue.then(op, op);
    this.queue = next.catch(() => {});
    return next;
  }

  private nft(script: string): Promise<unknown> {
    return runCommand('nft', ['-f', '-'], { input: script, displayName: 'nft -f -' });
  }

  /**
   * Replaces any table of ours with one holding `sandboxes`, atomically; their egress
   * counters go on from what the table replaced had counted.
   */
  install(sandboxes: { s: FirewallSandbox; resolved: ResolvedSets }[]): Promise<void> {
    return this.run(async () => {
      const counted = await this.countedSoFar();
      await this.nft(
        wholeTableScript(
          this.options,
          sandboxes.map((e) => ({ ...e, egress: counted.get(e.s.id) })),
        ),
      );
      this.sandboxes.clear();
      for (const { s } of sandboxes) this.sandboxes.set(s.id, s);
    });
  }

  private async reinstall(): Promise<unknown> {
    const counted = await this.countedSoFar();
    const all = [...this.sandboxes.values()].map((s) => ({
      s,
      resolved: this.options.resolved(s.id),
      egress: counted.get(s.id),
    }));
    return this.nft(wholeTableScript(this.options, all));
  }

  /** The egress counters in the table now; none if they cannot be read (they start again from 0). */
  private countedSoFar(): Promise<Map<string, CounterValue>> {
    return egressInTable().catch((e: Error) => {
      this.options.log.warn({ err: e }, 'cannot read the egress counters: they start again from 0');
      return new Map<string, CounterValue>();
    });
  }

  /**
   * Bytes each sandbox has sent out of the host since its counter was made, by sandbox id
   * (the table must be installed): one `nft` call serves every sandbox for
   * EGRESS_READING_MS, and callers meanwhile share it.
   */
  async egressBytes(): Promise<Map<string, number>> {
    const now = Date.now();
    if (!this.egressReading || now - this.egressReading.at >= EGRESS_READING_MS)
      this.egressReading = { at: now, counters: listEgressCounters() };
    const reading = this.egressReading;
    try {
      const counters = await reading.counters;
      return new Map([...counters].map(([id, c]) => [id, c.bytes]));
    } catch (e) {
      // A failed reading is not kept: the next caller tries again.
      if (this.egressReading === reading) this.egressReading = undefined;
      throw e;
    }
  }

  /** Runs a change; if it fails, reinstalls the whole table with the change made. */
  private change(script: string, apply: () => void): Promise<void> {
    return this.run(async () => {
      try {
        await this.nft(script);
        apply();
      } catch (e) {
        this.options.log.warn({ err: e }, 'nftables change failed: reinstalling the whole table');
        apply();
        await this.reinstall();
      }
    });
  }

  addSandbox(s: FirewallSandbox): Promise<void> {
    return this.change(addSandboxScript(s, this.options.resolved(s.id)), () => this.sandboxes.set(s.id, s));
  }

  /**
   * Replaces a sandbox's policy, then forgets the connections it opened, so that they
   * are judged again under the new policy (TCP picks up again where it is allowed).
   */
  async updatePolicy(s: FirewallSandbox): Promise<void> {
    await this.change(updatePolicyScript(s, this.options.resolved(s.id)), () => this.sandboxes.set(s.id, s));
    await forgetConnections(s.address);
  }

  removeSandbox(id: string): Promise<void> {
    const s = this.sandboxes.get(id);
    if (!s) return Promise.resolve();
    return this.change(removeSandboxScript(s), () => this.sandboxes.delete(id));
  }

  /** Addresses a domain rule of the sandbox resolved to; ignored if the sandbox is gone. */
  addResolved(id: string, kind: 'allow' | 'deny', resolved: ResolvedAddress[]): Promise<void> {
    if (resolved.length === 0) return Promise.resolve();
    return this.run(async () => {
      if (!this.sandboxes.has(id)) return;
      await this.nft(addResolvedScript(id, kind, resolved)).catch((e: Error) =>
        this.options.log.warn(
          { sandbox: id, err: e, set: sandboxSet(id, `${kind}name`) },
          'cannot add resolved addresses',
        ),
      );
    });
  }

  has(id: string): boolean {
    return this.sandboxes.has(id);
  }

  /** Removes the table. */
  remove(): Promise<void> {
    return this.run(async () => {
      await this.nft(deleteTableScript());
      this.sandboxes.clear();
    });
  }
}

/** Deletes the host's conntrack entries of connections `address` opened. */
export async function forgetConnections(address: string): Promise<void> {
  try {
    await runCommand('conntrack', ['-D', '-s', address]);
  } catch (e) {
    // conntrack exits 1 when there was nothing to delete.
    if (!(e instanceof CommandError && /0 flow entries/.test(e.message))) throw e;
  }
}
