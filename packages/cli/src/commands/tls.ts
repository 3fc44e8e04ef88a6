import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Command } from 'commander';
import { checkDomain, ensureCa, ensureServerCert, type ServerResult, tlsDir } from '../local-ca.js';

/** How to trust aiva's CA, for the clients users run: printed, never done. */
export function trustAdvice(caCert: string): string[] {
  return [
    'Trust the CA where the clients run:',
    `  Node.js and the e2b SDK:  export NODE_EXTRA_CA_CERTS=${caCert}`,
    `  Python (these replace its default CAs): export SSL_CERT_FILE=${caCert} REQUESTS_CA_BUNDLE=${caCert}`,
    '  The whole machine (Debian, Ubuntu), as root:',
    `    cp ${caCert} /usr/local/share/ca-certificates/aiva-local-ca.crt && update-ca-certificates`,
    '    (Node.js reads that store with --use-openssl-ca only; undo: rm the file, update-ca-certificates --fresh)',
  ];
}

export function registerTlsCommands(program: Command): void {
  const tls = program.command('tls').description('certificates for serving HTTPS on a domain of your own');
  tls
    .command('init')
    .description(
      'make a local CA (once) and a certificate for --domain D and *.D that `aiva up --domain D` serves; without --domain, renew the certificates made before',
    )
    .option(
      '--domain <domain>',
      'the domain sandboxes are served under ({port}-{sandboxId}.<domain>, api.<domain>)',
    )
    .action(async (opts: { domain?: string }) => {
      const domain = opts.domain === undefined ? undefined : checkDomain(opts.domain);
      const ca = await ensureCa();
      const out: string[] = [
        `CA: ${ca.cert} (${ca.created ? 'made now' : 'kept'}; its key ${ca.key} is readable by its owner only)`,
        `  SHA-256 fingerprint ${ca.fingerprint}`,
      ];
      const domains = domain
        ? [domain]
        : await readdir(join(tlsDir(), 'domains')).catch((e: NodeJS.ErrnoException) => {
            if (e.code === 'ENOENT') return [] as string[];
            throw e;
          });
      const certs: ServerResult[] = [];
      for (const d of domains.sort()) certs.push(await ensureServerCert(d));
      for (const c of certs)
        out.push(
          `Certificate for ${c.domain} and *.${c.domain}: ${c.cert} (${c.made ? `made now: ${c.made}` : 'kept'}; valid until ${c.validTo})`,
        );
      if (certs.length === 0)
        out.push('No certificate for a domain yet: run aiva tls init --domain <domain>');
      out.push('', ...trustAdvice(ca.cert), '');
      const first = certs[0]?.domain ?? '<domain>';
      out.push(
        'Then serve it:',
        `  aiva up --domain ${first} --port 443 --dns-listen 127.0.0.1:5353`,
        `  and resolve *.${first} through that DNS listener (aiva up prints how).`,
      );
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
