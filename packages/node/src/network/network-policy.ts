import { SandboxSpecError } from '../runtime/types.js';
import { type Cidr, cidrWithin, formatCidr, parseCidr, parseIpv4 } from './ipv4.js';

/**
 * A sandbox's egress policy, as E2B's API takes it (`allow_internet_access` and the
 * `network` object's `allowOut` / `denyOut`). Entries are IPv4 addresses, CIDR blocks,
 * domain names (`example.com`) or wildcards (`*.example.com`: every subdomain at any
 * depth, not the apex).
 *
 * - Internet egress is allowed unless `allowInternetAccess` is false, which is the same
 *   as `denyOut: ['0.0.0.0/0']`.
 * - `denyOut` entries are refused; `allowOut` entries are exceptions that win over
 *   `denyOut` (an address both allowed and denied is allowed).
 * - Whatever the policy says, a sandbox never reaches other sandboxes, the host's own
 *   addresses, link-local/metadata, private (RFC 1918), CGNAT, loopback, multicast or
 *   reserved addresses (`ALWAYS_BLOCKED`): an `allowOut` entry inside one of those is an
 *   error. Sandboxes have no IPv6.
 */
export interface NetworkPolicy {
  allowInternetAccess?: boolean;
  allowOut?: string[];
  denyOut?: string[];
}

/** What a sandbox can never reach, whatever its policy (the host's own addresses are matched apart). */
export const ALWAYS_BLOCKED: readonly { cidr: string; what: string }[] = [
  { cidr: '0.0.0.0/8', what: '"this network"' },
  { cidr: '10.0.0.0/8', what: 'a private range (RFC 1918)' },
  { cidr: '100.64.0.0/10', what: 'carrier-grade NAT (RFC 6598)' },
  { cidr: '127.0.0.0/8', what: 'loopback' },
  { cidr: '169.254.0.0/16', what: 'link-local and cloud metadata' },
  { cidr: '172.16.0.0/12', what: 'a private range (RFC 1918)' },
  { cidr: '192.0.0.0/24', what: 'IETF protocol assignments' },
  { cidr: '192.168.0.0/16', what: 'a private range (RFC 1918)' },
  { cidr: '224.0.0.0/4', what: 'multicast' },
  { cidr: '240.0.0.0/4', what: 'reserved and broadcast' },
];

/** The most entries one list may hold. */
export const MAX_POLICY_ENTRIES = 1000;

/** A policy made ready to enforce. */
export interface CompiledPolicy {
  /** CIDR blocks (normalized, `a.b.c.d` for /32). */
  allowCidrs: string[];
  denyCidrs: string[];
  /** Domain patterns, lower case: `example.com` or `*.example.com`. */
  allowNames: string[];
  denyNames: string[];
  /**
   * Whether the DNS forwarder answers at all: a sandbox denied everything with nothing
   * allowed has nothing to resolve, and answering would leave DNS open as a channel out.
   */
  dns: boolean;
}

const LABEL = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** The normalized domain name or wildcard, or undefined if `text` is neither. */
export function parseDomainPattern(text: string): string | undefined {
  let name = text.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  const wildcard = name.startsWith('*.');
  if (wildcard) name = name.slice(2);
  if (name.length === 0 || name.length > 253) return undefined;
  const labels = name.split('.');
  if (!labels.every((l) => LABEL.test(l))) return undefined;
  // All-numeric names are malformed addresses, not domains.
  if (labels.every((l) => /^\d+$/.test(l))) return undefined;
  return wildcard ? `*.${name}` : name;
}

/** Whether `name` (a DNS name as resolved) matches `pattern` (from parseDomainPattern). */
export function domainMatches(pattern: string, name: string): boolean {
  const n = name.toLowerCase().replace(/\.$/, '');
  if (pattern.startsWith('*.')) return n.endsWith(pattern.slice(1));
  return n === pattern;
}

const blocked: { cidr: Cidr; text: string; what: string }[] = ALWAYS_BLOCKED.map((b) => ({
  cidr: parseCidr(b.cidr) as Cidr,
  text: b.cidr,
  what: b.what,
}));

function looksIpv6(text: string): boolean {
  return text.includes(':');
}

function validateList(value: unknown, field: string, allow: boolean): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new SandboxSpecError(`${field} must be a list of strings`);
  if (value.length > MAX_POLICY_ENTRIES)
    throw new SandboxSpecError(
      `${field} has ${value.length} entries; at most ${MAX_POLICY_ENTRIES} are allowed`,
    );
  const out: string[] = [];
  value.forEach((entry, i) => {
    const at = `${field}[${i}]`;
    if (typeof entry !== 'string') throw new SandboxSpecError(`${at} must be a string, not ${typeof entry}`);
    const text = entry.trim();
    if (looksIpv6(text)) {
      throw new SandboxSpecError(`${at} "${entry}": IPv6 is not supported (sandboxes have IPv4 only)`);
    }
    const cidr = parseCidr(text);
    if (cidr) {
      if (allow) {
        const inside = blocked.find((b) => cidrWithin(cidr, b.cidr));
        if (inside) {
          throw new SandboxSpecError(
            `${at} "${entry}" lies in ${inside.text}, ${inside.what}, which sandboxes can never reach`,
          );
        }
      }
      out.push(formatCidr(cidr));
      return;
    }
    if (/^[\d./]+$/.test(text) || parseIpv4(text.split('/')[0] ?? '') !== undefined) {
      throw new SandboxSpecError(`${at} "${entry}" is not a valid IPv4 address or CIDR block`);
    }
    const name = parseDomainPattern(text);
    if (!name) {
      throw new SandboxSpecError(
        `${at} "${entry}" is not an IPv4 address, a CIDR block, a domain name or a *.domain wildcard`,
      );
    }
    out.push(name);
  });
  return [...new Set(out)];
}

/**
 * Checks a policy as it arrives from a caller (create, or an update that replaces the
 * policy) and returns it normalized: lists deduplicated, addresses as CIDR blocks with
 * host bits cleared, names in lower case. A bad entry is a SandboxSpecError that names it.
 */
export function validateNetworkPolicy(input: unknown, field = 'network'): NetworkPolicy {
  if (input === undefined || input === null) return {};
  if (typeof input !== 'object' || Array.isArray(input))
    throw new SandboxSpecError(`${field} must be an object`);
  const known = new Set(['allowInternetAccess', 'allowOut', 'denyOut']);
  for (const key of Object.keys(input)) {
    if (!known.has(key)) {
      throw new SandboxSpecError(
        `${field}.${key} is not a network policy setting (known: allowInternetAccess, allowOut, denyOut)`,
      );
    }
  }
  const p = input as Record<string, unknown>;
  const policy: NetworkPolicy = {};
  if (p.allowInternetAccess !== undefined) {
    if (typeof p.allowInternetAccess !== 'boolean')
      throw new SandboxSpecError(`${field}.allowInternetAccess must be true or false`);
    policy.allowInternetAccess = p.allowInternetAccess;
  }
  const allowOut = validateList(p.allowOut, `${field}.allowOut`, true);
  const denyOut = validateList(p.denyOut, `${field}.denyOut`, false);
  if (allowOut.length > 0) policy.allowOut = allowOut;
  if (denyOut.length > 0) policy.denyOut = denyOut;
  return policy;
}

/** Splits a (validated) policy into what the firewall and the DNS forwarder enforce. */
export function compilePolicy(policy: NetworkPolicy): CompiledPolicy {
  const c: CompiledPolicy = { allowCidrs: [], denyCidrs: [], allowNames: [], denyNames: [], dns: true };
  for (const e of policy.allowOut ?? []) (parseCidr(e) ? c.allowCidrs : c.allowNames).push(e);
  for (const e of policy.denyOut ?? []) (parseCidr(e) ? c.denyCidrs : c.denyNames).push(e);
  if (policy.allowInternetAccess === false && !c.denyCidrs.includes('0.0.0.0/0'))
    c.denyCidrs.push('0.0.0.0/0');
  const nothingAllowed = c.allowCidrs.length === 0 && c.allowNames.length === 0;
  c.dns = !(c.denyCidrs.includes('0.0.0.0/0') && nothingAllowed);
  return c;
}
