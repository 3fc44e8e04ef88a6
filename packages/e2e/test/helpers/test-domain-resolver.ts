// Preloaded (`node --import`) into the e2b SDK's process by the host-routing test: names
// under the test domain (AIVA_TEST_DOMAIN) resolve to 127.0.0.1, every other name as
// usual. A resolver for a test domain without touching the host's DNS.
import dns, { type LookupAddress, type LookupOptions } from 'node:dns';

const domain = process.env.AIVA_TEST_DOMAIN ?? 'aiva.test';
const original = dns.lookup;
type Callback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

function lookup(hostname: string, options: LookupOptions | number | Callback, callback?: Callback): void {
  const cb = (typeof options === 'function' ? options : callback) as Callback;
  const opts = typeof options === 'object' ? options : {};
  if (hostname === domain || hostname.endsWith(`.${domain}`)) {
    if (opts.all) process.nextTick(cb, null, [{ address: '127.0.0.1', family: 4 }]);
    else process.nextTick(cb, null, '127.0.0.1', 4);
    return;
  }
  (original as (h: string, o: LookupOptions, c: Callback) => void).call(dns, hostname, opts, cb);
}
(dns as { lookup: unknown }).lookup = lookup;
