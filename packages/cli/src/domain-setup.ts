// What `aiva up --domain D` adds: the certificate it serves (one given, or the one
// `aiva tls init --domain D` made), the address its DNS listener gives, and the lines of
// its banner that tell clients how to reach it by name.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { usableServerCert } from './local-ca.js';

const RENEW_WARNING_MS = 30 * 24 * 60 * 60 * 1000;

export interface TlsChoice {
  tls?: { cert: Buffer; key: Buffer };
  /** aiva's CA, when the certificate is aiva's: what clients set NODE_EXTRA_CA_CERTS to. */
  caCert?: string;
}

/**
 * --tls-cert/--tls-key if given; else, with a domain, the certificate of `aiva tls init`,
 * and an error that names the command to run when there is none (unless --no-tls):
 * E2B_DOMAIN clients speak HTTPS only, so a plain-HTTP server for a domain is one they
 * cannot reach, and is only served when asked for.
 */
export async function tlsFor(
  opts: { tlsCert?: string; tlsKey?: string; tls: boolean },
  domain: string | undefined,
  home: string,
  logger: Logger,
): Promise<TlsChoice> {
  if (opts.tlsCert && opts.tlsKey)
    return { tls: { cert: await readFile(opts.tlsCert), key: await readFile(opts.tlsKey) } };
  if (!domain || !opts.tls) return {};
  const found = await usableServerCert(domain, home);
  if (!found.ok)
    throw new Error(
      `${found.why}. Make one with \`aiva tls init --domain ${domain}\`, or give --tls-cert and --tls-key, or --no-tls to serve plain HTTP (which E2B_DOMAIN clients cannot use)`,
    );
  if (Date.parse(found.validTo) - Date.now() < RENEW_WARNING_MS)
    logger.warn(
      { cert: found.files.cert, validTo: found.validTo },
      `the certificate for ${domain} ends soon: renew it with \`aiva tls init --domain ${domain}\``,
    );
  return { tls: found.pem, caCert: found.ca.cert };
}

/** The address the DNS listener gives: --host, or 127.0.0.1 when that is every address or loopback. */
export function defaultDnsAnswer(host: string): string {
  if (
    host === '0.0.0.0' ||
    host === '::' ||
    host === 'localhost' ||
    host === '::1' ||
    host.startsWith('127.')
  )
    return '127.0.0.1';
  return host;
}

export function domainBanner(o: {
  domain: string;
  apiKey: string;
  url: string;
  caCert?: string;
  dns?: { host: string; port: number; answer: string };
}): string[] {
  const { domain: d } = o;
  const url = new URL(o.url);
  const lines: string[] = [];
  if (url.protocol === 'https:' && url.port === '') {
    lines.push(
      `  or by domain, as with E2B's cloud (API https://api.${d}, sandbox.getHost(port) = {port}-{sandboxId}.${d}):`,
      `  export E2B_DOMAIN=${d} E2B_API_KEY=${o.apiKey}${o.caCert ? ` NODE_EXTRA_CA_CERTS=${o.caCert}` : ''}`,
    );
  } else {
    lines.push(
      `  E2B_DOMAIN=${d} needs HTTPS on port 443; this server is ${o.url}: start it with --port 443${url.protocol === 'https:' ? '' : ' and a certificate (aiva tls init)'}`,
    );
  }
  if (o.dns) {
    const at = o.dns.host.includes(':') ? `[${o.dns.host}]:${o.dns.port}` : `${o.dns.host}:${o.dns.port}`;
    lines.push(
      `DNS: aiva answers for ${d} and *.${d} with ${o.dns.answer} at ${at} (UDP; it refuses every other name and forwards none).`,
      `  Send your resolver's queries for ${d} there, e.g. dnsmasq: server=/${d}/${o.dns.host}#${o.dns.port}`,
    );
  } else {
    lines.push(
      `DNS: ${d} and *.${d} must resolve to this machine: add --dns-listen 127.0.0.1:5353 (aiva answers for ${d} only) and point your resolver at it, or put *.${d} in your DNS zone (/etc/hosts cannot hold wildcards).`,
    );
  }
  return lines;
}
