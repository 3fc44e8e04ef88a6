// aiva's own certificate authority, for serving HTTPS on a domain of the user's choosing
// (`aiva tls init --domain D`, used by `aiva up --domain D`): a CA made once and a
// certificate for D and *.D per domain, both made by the `openssl` command. Node's
// X509Certificate only reads them, to decide whether to make them again.
import { execFile } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { dataDir } from '@aiva/node';

const run = promisify(execFile);

const DAY_MS = 24 * 60 * 60 * 1000;
const CA_DAYS = 3650;
/** The longest validity clients (Apple's, browsers) accept for a server certificate. */
const SERVER_DAYS = 397;
/** A server certificate closer than this to its end is made again. */
const RENEW_BEFORE_DAYS = 30;

export const tlsDir = (home = dataDir()) => join(home, 'tls');

export interface CaFiles {
  cert: string;
  key: string;
}
export const caFiles = (home?: string): CaFiles => ({
  cert: join(tlsDir(home), 'ca.pem'),
  key: join(tlsDir(home), 'ca.key'),
});

export interface ServerFiles {
  domain: string;
  cert: string;
  key: string;
}
export const serverFiles = (domain: string, home?: string): ServerFiles => ({
  domain,
  cert: join(tlsDir(home), 'domains', domain, 'cert.pem'),
  key: join(tlsDir(home), 'domains', domain, 'key.pem'),
});

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * A domain aiva can serve sandboxes under: lower-case DNS labels, at least two (a
 * certificate for `*.test` alone is one no client accepts), 253 characters at most.
 */
export function checkDomain(domain: string): string {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const labels = d.split('.');
  if (d.length > 253 || labels.length < 2 || !labels.every((l) => LABEL.test(l)))
    throw new Error(
      `bad domain "${domain}": expected a DNS name of two labels or more, such as aiva.example or sandboxes.example.com`,
    );
  return d;
}

async function readCert(file: string): Promise<X509Certificate | undefined> {
  const pem = await readFile(file).catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  return pem && new X509Certificate(pem);
}

const exists = (file: string) =>
  readFile(file).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT') return false;
      throw e;
    },
  );

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args);
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT')
      throw new Error('the openssl command is not installed (apt-get install openssl)');
    throw new Error(`openssl ${args[0]} failed: ${(err.stderr ?? err.message).trim()}`);
  }
}

// Extensions as strict verifiers want them (Python 3.13's VERIFY_X509_STRICT among them):
// a critical CA:TRUE on the CA, key identifiers on both, serverAuth on the server's.
const config = (sans: string) => `[req]
distinguished_name = dn
prompt = no
[dn]
CN = aiva local CA
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName = ${sans}
`;
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-noenc'];

/** A scratch directory under the TLS directory (same filesystem: its files link and rename into place). */
async function scratch(home?: string): Promise<string> {
  await mkdir(tlsDir(home), { recursive: true, mode: 0o755 });
  return mkdtemp(join(tlsDir(home), '.new-'));
}

export interface CaResult extends CaFiles {
  created: boolean;
  /** SHA-256 fingerprint of the CA certificate. */
  fingerprint: string;
}

/** The CA, made if there is none; an existing one is kept as it is. */
export async function ensureCa(home?: string): Promise<CaResult> {
  const files = caFiles(home);
  const existing = await loadCa(files);
  if (existing) return { ...files, created: false, fingerprint: existing.fingerprint256 };
  const dir = await scratch(home);
  try {
    const cnf = join(dir, 'openssl.cnf');
    await writeFile(cnf, config(''));
    const subject = `/CN=aiva local CA (${hostname()}, ${new Date().toISOString().slice(0, 10)})/O=aiva`;
    await openssl([
      'req',
      '-x509',
      '-config',
      cnf,
      '-extensions',
      'ca',
      '-subj',
      subject,
      ...EC_KEY,
      '-days',
      String(CA_DAYS),
      '-keyout',
      join(dir, 'ca.key'),
      '-out',
      join(dir, 'ca.pem'),
    ]);
    await chmod(join(dir, 'ca.key'), 0o600);
    // The key goes in first and without replacing anything: of two runs at once, one CA wins.
    try {
      await link(join(dir, 'ca.key'), files.key);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const winner = await loadCa(files);
      if (!winner) throw e;
      return { ...files, created: false, fingerprint: winner.fingerprint256 };
    }
    await link(join(dir, 'ca.pem'), files.cert);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const made = await loadCa(files);
  if (!made) throw new Error(`the CA in ${tlsDir(home)} was not made`);
  return { ...files, created: true, fingerprint: made.fingerprint256 };
}

/** The CA's certificate if both its files are there; an error if only one is. */
async function loadCa(files: CaFiles): Promise<X509Certificate | undefined> {
  const cert = await readCert(files.cert);
  const key = await exists(files.key);
  if (!cert && !key) return undefined;
  if (!cert || !key)
    throw new Error(
      `the CA in ${join(files.cert, '..')} is incomplete (${cert ? files.key : files.cert} is missing): remove ${cert ? files.cert : files.key} to make a new one`,
    );
  return cert;
}

/** Why a server certificate must be made again, or undefined if it is good. */
export function staleReason(
  cert: X509Certificate,
  ca: X509Certificate,
  domain: string,
  now = Date.now(),
): string | undefined {
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return 'it was not signed by this CA';
  for (const name of [domain, `api.${domain}`])
    if (!cert.checkHost(name, { wildcards: true })) return `it does not cover ${name}`;
  const ends = Date.parse(cert.validTo);
  if (ends - now < RENEW_BEFORE_DAYS * DAY_MS) return `it ends on ${cert.validTo}`;
  return undefined;
}

export interface ServerResult extends ServerFiles {
  /** Why it was made (undefined: the existing one was kept). */
  made?: string;
  validTo: string;
}

/**
 * The certificate for `domain` and `*.domain` (and 127.0.0.1, so that E2B_API_URL=https://127.0.0.1
 * works with the same CA), signed by the CA: kept if it is good, made otherwise.
 */
export async function ensureServerCert(domain: string, home?: string): Promise<ServerResult> {
  const ca = await ensureCa(home);
  const caCert = (await readCert(ca.cert)) as X509Certificate;
  const files = serverFiles(domain, home);
  const existing = (await exists(files.key)) ? await readCert(files.cert) : undefined;
  const reason = existing ? staleReason(existing, caCert, domain) : 'there was none';
  if (existing && !reason) return { ...files, validTo: existing.validTo };
  const dir = await scratch(home);
  try {
    const cnf = join(dir, 'openssl.cnf');
    await writeFile(cnf, config(`DNS:${domain}, DNS:*.${domain}, IP:127.0.0.1`));
    await openssl([
      'req',
      '-x509',
      '-config',
      cnf,
      '-extensions',
      'server',
      '-subj',
      `/CN=${domain}`,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      ...EC_KEY,
      '-days',
      String(SERVER_DAYS),
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ]);
    await chmod(join(dir, 'key.pem'), 0o600);
    await rm(join(dir, 'openssl.cnf'));
    // The pair changes as one: the new directory takes the old one's place.
    const old = join(tlsDir(home), `.old-${randomBytes(6).toString('hex')}`);
    await rename(join(files.cert, '..'), old).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await mkdir(join(tlsDir(home), 'domains'), { recursive: true });
    await rename(dir, join(files.cert, '..'));
    await rm(old, { recursive: true, force: true });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const made = (await readCert(files.cert)) as X509Certificate;
  return { ...files, made: reason, validTo: made.validTo };
}

export type UsableCert =
  | { ok: true; files: ServerFiles; ca: CaFiles; validTo: string; pem: { cert: Buffer; key: Buffer } }
  | { ok: false; why: string };

/** What `aiva up --domain` serves: the certificate `aiva tls init` made for `domain`, if it is good. */
export async function usableServerCert(domain: string, home?: string): Promise<UsableCert> {
  const files = serverFiles(domain, home);
  const ca = caFiles(home);
  const caCert = await readCert(ca.cert);
  const cert = await readCert(files.cert);
  if (!caCert || !cert || !(await exists(files.key)))
    return { ok: false, why: `aiva has no certificate for ${domain}` };
  if (!cert.checkIssued(caCert) || !cert.verify(caCert.publicKey))
    return { ok: false, why: `the certificate for ${domain} was not signed by aiva's CA ${ca.cert}` };
  if (Date.parse(cert.validTo) <= Date.now())
    return { ok: false, why: `the certificate for ${domain} ended on ${cert.validTo}` };
  return {
    ok: true,
    files,
    ca,
    validTo: cert.validTo,
    pem: { cert: await readFile(files.cert), key: await readFile(files.key) },
  };
}
