/** IPv4 addresses and CIDR blocks as numbers: parsing, formatting, containment. */

export interface Cidr {
  /** Network address (host bits cleared). */
  base: number;
  prefix: number;
}

const OCTET = /^(0|[1-9]\d{0,2})$/;

/** The address as a number, or undefined if `text` is not a dotted-quad IPv4 address. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!OCTET.test(p)) return undefined;
    const v = Number(p);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

function mask(prefix: number): number {
  return prefix === 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix)) >>> 0;
}

/** `a.b.c.d/n` or a bare address (a /32); undefined if malformed. Host bits are cleared. */
export function parseCidr(text: string): Cidr | undefined {
  const [ip, len, ...rest] = text.split('/');
  if (rest.length > 0 || ip === undefined) return undefined;
  const addr = parseIpv4(ip);
  if (addr === undefined) return undefined;
  if (len === undefined) return { base: addr, prefix: 32 };
  if (!/^(0|[1-9]\d?)$/.test(len)) return undefined;
  const prefix = Number(len);
  if (prefix > 32) return undefined;
  return { base: (addr & mask(prefix)) >>> 0, prefix };
}

export function formatCidr(c: Cidr): string {
  return c.prefix === 32 ? formatIpv4(c.base) : `${formatIpv4(c.base)}/${c.prefix}`;
}

/** Whether block `inner` lies entirely inside block `outer`. */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.prefix >= outer.prefix && (inner.base & mask(outer.prefix)) >>> 0 === outer.base;
}

/** Whether the two blocks share any address. */
export function cidrOverlaps(a: Cidr, b: Cidr): boolean {
  return cidrWithin(a, b) || cidrWithin(b, a);
}
