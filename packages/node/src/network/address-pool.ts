import { parseCidr, formatIpv4 as toIp } from './ipv4.js';

/**
 * Point-to-point links between the host and each sandbox namespace, cut from one IPv4
 * block into /30s: slot n has network base+4n, the host end base+4n+1 and the
 * namespace end base+4n+2. A slot is never handed out twice while in use.
 */
export interface LinkAddresses {
  slot: number;
  /** Host side of the link. */
  host: string;
  /** Namespace side of the link: the sandbox's address as the host sees it. */
  sandbox: string;
  prefix: 30;
}

export class AddressPool {
  private readonly base: number;
  readonly size: number;
  private readonly used = new Set<number>();
  private next = 0;

  /** `cidr` such as 10.11.0.0/16 (prefix at most /28). */
  constructor(readonly cidr: string) {
    const block = parseCidr(cidr);
    if (!block || !cidr.includes('/') || block.prefix < 8 || block.prefix > 28)
      throw new Error(`bad address block ${cidr}`);
    this.base = block.base;
    this.size = 2 ** (32 - block.prefix) / 4;
  }

  addresses(slot: number): LinkAddresses {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.size)
      throw new Error(`slot ${slot} is outside ${this.cidr}`);
    const net = this.base + slot * 4;
    return { slot, host: toIp(net + 1), sandbox: toIp(net + 2), prefix: 30 };
  }

  /** Marks a slot as taken (a sandbox found on start). */
  claim(slot: number): void {
    if (this.used.has(slot)) throw new Error(`slot ${slot} is already in use`);
    this.addresses(slot);
    this.used.add(slot);
  }

  /** Takes a free slot, going round the block so that a freed slot is reused last. */
  allocate(): LinkAddresses {
    if (this.used.size >= this.size) throw new Error(`no free sandbox addresses left in ${this.cidr}`);
    while (this.used.has(this.next)) this.next = (this.next + 1) % this.size;
    const slot = this.next;
    this.used.add(slot);
    this.next = (slot + 1) % this.size;
    return this.addresses(slot);
  }

  release(slot: number): void {
    this.used.delete(slot);
  }

  get inUse(): number {
    return this.used.size;
  }
}
