// The direct listener's identity (`aiva node join --direct-address`): a self-signed
// certificate made by the `openssl` command at the first start and kept in the node's
// data directory. No CA is involved: the node reports the certificate's SHA-256
// fingerprint to the server in its snapshots, and the server pins it.
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { normalizeFingerprint } from '@aiva/protocol/node';
import { runCommand } from '../host/command.js';

export interface DirectCert {
  key: Buffer;
  cert: Buffer;
  /** SHA-256 of the certificate, lower-case hex (the contract's form). */
  fingerprint: string;
}

async function read(dir: string): Promise<DirectCert | undefined> {
  const [key, cert] = await Promise.all(
    ['key.pem', 'cert.pem'].map((f) => readFile(join(dir, f)).catch(() => undefined)),
  );
  if (!key || !cert) return undefined;
  const x509 = new X509Certificate(cert);
  // One about to expire is made again (the server learns the new fingerprint from the next snapshot).
  if (Date.parse(x509.validTo) < Date.now() + 7 * 86_400_000) return undefined;
  return { key, cert, fingerprint: normalizeFingerprint(x509.fingerprint256) as string };
}

/** The certificate in `dir` (`cert.pem`, `key.pem` 0600), made first if there is none. */
export async function ensureDirectCert(dir: string, name: string): Promise<DirectCert> {
  const kept = await read(dir);
  if (kept) return kept;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const tmp = join(dir, `new-${process.pid}`);
  await mkdir(tmp, { recursive: true, mode: 0o700 });
  try {
    await runCommand('openssl', [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '3650',
      '-subj',
      `/CN=aiva node ${name}`,
      '-keyout',
      join(tmp, 'key.pem'),
      '-out',
      join(tmp, 'cert.pem'),
    ]).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        throw new Error('direct mode needs the openssl command (apt-get install openssl)');
      throw e;
    });
    await rename(join(tmp, 'key.pem'), join(dir, 'key.pem'));
    await rename(join(tmp, 'cert.pem'), join(dir, 'cert.pem'));
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const made = await read(dir);
  if (!made) throw new Error(`the certificate made in ${dir} cannot be read back`);
  return made;
}
