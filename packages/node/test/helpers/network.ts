import { createServer, type Server } from 'node:net';
import { execInSandbox, type SandboxInfo } from '../../src/index.js';

/** Runs a shell command in the sandbox through envd; fails on a non-zero exit unless `allowFail`. */
export async function sh(s: SandboxInfo, command: string, allowFail = false): Promise<string> {
  const r = await execInSandbox(s.network?.address ?? '', command, {
    accessToken: s.accessToken,
    timeoutMs: 60_000,
  });
  if (r.exitCode !== 0 && !allowFail)
    throw new Error(`\`${command}\` in ${s.id}: ${r.status}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/** What came of a connection attempt. */
export type Outcome = 'ok' | 'refused' | 'timeout' | 'no-dns' | `curl-${number}`;

const CURL_OUTCOME: Record<number, Outcome> = { 0: 'ok', 6: 'no-dns', 7: 'refused', 28: 'timeout' };

/**
 * Fetches every URL from inside the sandbox at once (curl, 2 s to connect) and says
 * what became of each: `ok` (an HTTP answer), `refused`, `timeout` (dropped), `no-dns`.
 */
export async function reach(s: SandboxInfo, urls: string[]): Promise<Record<string, Outcome>> {
  const script = urls
    .map((u, i) => `( curl -s -o /dev/null --connect-timeout 2 -m 5 '${u}'; echo "${i} $?" ) &`)
    .join('\n');
  const out = await sh(s, `${script}\nwait`);
  const result: Record<string, Outcome> = {};
  for (const line of out.trim().split('\n')) {
    const [i, code] = line.split(' ').map(Number);
    const url = urls[i ?? -1];
    if (url !== undefined) result[url] = CURL_OUTCOME[code ?? -1] ?? `curl-${code ?? -1}`;
  }
  return result;
}

/** The JSON a test-internet web server answers with: which server, and the client address it saw. */
export async function fetchJson(
  s: SandboxInfo,
  url: string,
): Promise<{ server: string; client: string; received: number }> {
  return JSON.parse(await sh(s, `curl -sS --connect-timeout 2 -m 5 '${url}'`));
}

/** A TCP server on the host, on every address, that answers "hello" to whoever connects. */
export async function hostServer(): Promise<{ port: number; server: Server; close(): Promise<void> }> {
  const server = createServer((c) => {
    c.on('error', () => {});
    c.end('HTTP/1.0 200 OK\r\ncontent-length: 5\r\n\r\nhello');
  });
  await new Promise<void>((r) => server.listen({ host: '0.0.0.0', port: 0 }, () => r()));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { port, server, close: () => new Promise((r) => server.close(() => r())) };
}

/** Starts an HTTP server on `port` inside the sandbox (python3), detached, and waits until it listens. */
export async function sandboxServer(s: SandboxInfo, port: number): Promise<void> {
  await sh(
    s,
    `cd /tmp && (setsid python3 -m http.server ${port} >/dev/null 2>&1 &) ; for i in $(seq 300); do (echo > /dev/tcp/127.0.0.1/${port}) 2>/dev/null && exit 0; sleep 0.1; done; exit 1`,
  );
}

/** Connects from the host to address:port: what came of it. */
export async function hostConnect(address: string, port: number): Promise<'ok' | 'refused' | 'timeout'> {
  const { connect } = await import('node:net');
  return new Promise((resolve) => {
    const c = connect({ host: address, port });
    const timer = setTimeout(() => {
      c.destroy();
      resolve('timeout');
    }, 2000);
    c.on('connect', () => {
      clearTimeout(timer);
      c.destroy();
      resolve('ok');
    });
    c.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve(e.code === 'ECONNREFUSED' ? 'refused' : 'timeout');
    });
  });
}
