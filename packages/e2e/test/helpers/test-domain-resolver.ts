// Preloaded (`node --import`) into the e2b SDK's process by the host-routing test, and
// imported by browser.test.ts once aiva's DNS listener is known: names under the test domain (AIVA_TEST_DOMAIN) are asked of aiva's own DNS listener
// (AIVA_TEST_DNS, `host:port`, what `aiva up --dns-listen` serves), every other name
// resolves as usual. The system resolver would do the same given a route for the domain
// (dnsmasq's server=/domain/…); the host's DNS is not touched.
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';

const domain = process.env.AIVA_TEST_DOMAIN ?? 'aiva.test';
const server = process.env.AIVA_TEST_DNS;
if (!server) throw new Error('AIVA_TEST_DNS (host:port of aiva’s DNS listener) is not set');
const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 });
resolver.setServers([server]);
const original = dns.lookup;
type Callback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

async function ask(hostname: string, family: number | undefined): Promise<LookupAddress[]> {
  if (family === 6) return (await resolver.resolve6(hostname)).map((address) => ({ address, family: 6 }));
  return (await resolver.resolve4(hostname)).map((address) => ({ address, family: 4 }));
}

function lookup(hostname: string, options: LookupOptions | number | Callback, callback?: Callback): void {
  const cb = (typeof options === 'function' ? options : callback) as Callback;
  const opts: LookupOptions =
    typeof options === 'object' ? options : typeof options === 'number' ? { family: options } : {};
  if (hostname === domain || hostname.endsWith(`.${domain}`)) {
    const family = typeof opts.family === 'number' ? opts.family : undefined;
    ask(hostname, family).then(
      (found) => {
        if (opts.all) cb(null, found);
        else cb(null, found[0]?.address ?? '', found[0]?.family ?? 4);
      },
      (err: NodeJS.ErrnoException) => cb(err, ''),
    );
    return;
  }
  (original as (h: string, o: LookupOptions, c: Callback) => void).call(dns, hostname, opts, cb);
}
(dns as { lookup: unknown }).lookup = lookup;

// The promise form too (Playwright's connections look names up with it).
const originalPromise = dns.promises.lookup;
async function lookupPromise(
  hostname: string,
  options?: LookupOptions | number,
): Promise<LookupAddress | LookupAddress[]> {
  const opts: LookupOptions = typeof options === 'object' ? options : { family: options };
  if (hostname === domain || hostname.endsWith(`.${domain}`)) {
    const found = await ask(hostname, typeof opts.family === 'number' ? opts.family : undefined);
    if (opts.all) return found;
    const first = found[0];
    if (!first) throw Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' });
    return first;
  }
  return (originalPromise as (h: string, o: LookupOptions) => Promise<LookupAddress | LookupAddress[]>).call(
    dns.promises,
    hostname,
    opts,
  );
}
(dns.promises as { lookup: unknown }).lookup = lookupPromise;
