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

function toInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return parts.reduce((n, p) => n * 256 + p, 0);
}

function toIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export class AddressPool {
  private readonly base: number;
  readonly size: number;
  private readonly used = new Set<number>();
  private next = 0;

  /** `cidr` such as 10.11.0.0/16 (prefix at most /28). */
  constructor(readonly cidr: string) {
    const [ip, len] = cidr.split('/');
    const prefix = Number(len);
    if (!ip || !Number.isInteger(prefix) || prefix < 8 || prefix > 28)
      throw new Error(`bad address block ${cidr}`);
    const mask = prefix === 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix)) >>> 0;
    this.base = (toInt(ip) & mask) >>> 0;
    this.size = 2 ** (32 - prefix) / 4;
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
