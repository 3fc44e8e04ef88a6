import { randomInt } from 'node:crypto';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { readFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import * as dns from 'dns-packet';
import type { Logger } from 'pino';
import { parseIpv4 } from './ipv4.js';

/** A DNS server the forwarder asks. */
export interface DnsUpstream {
  host: string;
  port: number;
}

/** What an answer resolved: the names of its CNAME chain and the IPv4 addresses at its end. */
export interface ResolvedAnswer {
  /** The question's name, then every CNAME target it led to (lower case, no trailing dot). */
  names: string[];
  addresses: string[];
  /** The smallest TTL along the chain, in seconds. */
  ttl: number;
}

/** One sandbox as the forwarder serves it. */
export interface DnsClient {
  /** Whether to answer at all (REFUSED otherwise). */
  answers(): boolean;
  /** Sees every answer before the sandbox does; the answer waits for it. */
  onAnswer(answer: ResolvedAnswer): Promise<void>;
}

/** The nameservers of a resolv.conf (IPv4 only: the forwarder asks over IPv4). */
export async function systemResolvers(file = '/etc/resolv.conf'): Promise<DnsUpstream[]> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((w) => w[0] === 'nameserver' && w[1] !== undefined && parseIpv4(w[1]) !== undefined)
    .map((w) => ({ host: w[1] as string, port: 53 }));
}

/** `a.b.c.d` or `a.b.c.d:port`. */
export function parseUpstream(text: string): DnsUpstream {
  const [host, port] = text.split(':');
  const p = port === undefined ? 53 : Number(port);
  if (!host || parseIpv4(host) === undefined || !Number.isInteger(p) || p < 1 || p > 65535)
    throw new Error(`bad DNS upstream "${text}" (expected an IPv4 address, optionally :port)`);
  return { host, port: p };
}

const RCODE_SERVFAIL = 2;
const RCODE_REFUSED = 5;
/** Queries one sandbox may have waiting on upstreams at once. */
const MAX_IN_FLIGHT = 128;

const lower = (n: string) => n.toLowerCase().replace(/\.$/, '');

/** The names and addresses an answer resolved, following CNAMEs from the question. */
export function resolvedOf(answer: dns.DecodedPacket): ResolvedAnswer | undefined {
  const q = answer.questions?.[0];
  if (!q) return undefined;
  const names = [lower(q.name)];
  const records = (answer.answers ?? []) as dns.Answer[];
  let ttl = Number.POSITIVE_INFINITY;
  for (let grew = true; grew; ) {
    grew = false;
    for (const rr of records) {
      if (rr.type !== 'CNAME' || !names.includes(lower(rr.name))) continue;
      const target = lower(rr.data as string);
      if (!names.includes(target)) {
        names.push(target);
        ttl = Math.min(ttl, rr.ttl ?? 0);
        grew = true;
      }
    }
  }
  const addresses: string[] = [];
  for (const rr of records) {
    if (rr.type === 'A' && names.includes(lower(rr.name))) {
      addresses.push(rr.data as string);
      ttl = Math.min(ttl, rr.ttl ?? 0);
    }
  }
  return { names, addresses, ttl: Number.isFinite(ttl) ? ttl : 0 };
}

/** An answer to `query` carrying only a response code. */
function errorAnswer(query: Buffer, rcode: number): Buffer {
  const out = Buffer.from(query);
  const flags = query.readUInt16BE(2);
  // QR set, opcode and RD kept, RA set, rcode.
  out.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0080 | rcode, 2);
  return out;
}

interface Listener {
  udp: UdpSocket;
  tcp: Server;
  connections: Set<Socket>;
  inFlight: number;
}

/**
 * The sandboxes' resolver: a small DNS forwarder in the node, listening on the host end
 * of each sandbox's link (UDP and TCP, port 53), answering only that sandbox. It passes
 * queries through to the upstream resolvers unchanged (a fresh random id and source port
 * per query, the answer checked against both) and shows every answer to the sandbox's
 * policy before the sandbox gets it, so that domain rules can add the addresses to the
 * firewall first.
 */
export class DnsForwarder {
  private readonly listeners = new Map<string, Listener>();
  private readonly timeoutMs: number;

  constructor(private readonly options: { upstreams: DnsUpstream[]; timeoutMs?: number; log: Logger }) {
    this.timeoutMs = options.timeoutMs ?? 2000;
  }

  get upstreams(): DnsUpstream[] {
    return this.options.upstreams;
  }

  /** Serves the sandbox known as `key` on `bind`:53, answering only `clientAddress`. */
  async listen(key: string, bind: string, clientAddress: string, client: DnsClient): Promise<void> {
    await this.unlisten(key);
    const l: Listener = {
      udp: createSocket({ type: 'udp4' }),
      tcp: createServer(),
      connections: new Set(),
      inFlight: 0,
    };
    l.udp.on('message', (msg, rinfo) => {
      if (rinfo.address !== clientAddress) return;
      void this.handle(l, client, msg, 'udp').then((answer) => {
        if (answer) l.udp.send(answer, rinfo.port, rinfo.address);
      });
    });
    l.udp.on('error', (e) => this.options.log.warn({ sandbox: key, err: e }, 'DNS socket error'));
    l.tcp.on('connection', (socket) => {
      if (socket.remoteAddress !== clientAddress) {
        socket.destroy();
        return;
      }
      this.serveTcp(l, client, socket);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        l.udp.once('error', reject);
        l.udp.bind({ address: bind, port: 53, exclusive: true }, () => {
          l.udp.off('error', reject);
          resolve();
        });
      });
      await new Promise<void>((resolve, reject) => {
        l.tcp.once('error', reject);
        l.tcp.listen({ host: bind, port: 53, exclusive: true }, () => {
          l.tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      await closeListener(l);
      throw new Error(`cannot serve DNS on ${bind}:53: ${(e as Error).message}`, { cause: e });
    }
    this.listeners.set(key, l);
  }

  async unlisten(key: string): Promise<void> {
    const l = this.listeners.get(key);
    if (!l) return;
    this.listeners.delete(key);
    await closeListener(l);
  }

  async close(): Promise<void> {
    await Promise.all([...this.listeners.keys()].map((k) => this.unlisten(k)));
  }

  private serveTcp(l: Listener, client: DnsClient, socket: Socket): void {
    let buffered = Buffer.alloc(0);
    socket.setTimeout(10_000, () => socket.destroy());
    socket.on('error', () => {});
    l.connections.add(socket);
    socket.on('close', () => l.connections.delete(socket));
    socket.on('data', (chunk) => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 2) {
        const n = buffered.readUInt16BE(0);
        if (buffered.length < 2 + n) break;
        const msg = buffered.subarray(2, 2 + n);
        buffered = buffered.subarray(2 + n);
        void this.handle(l, client, Buffer.from(msg), 'tcp').then((answer) => {
          if (!answer || socket.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(answer.length);
          socket.write(Buffer.concat([len, answer]));
        });
      }
    });
  }

  /** The answer to one query (undefined: say nothing). */
  private async handle(
    l: Listener,
    client: DnsClient,
    query: Buffer,
    transport: 'udp' | 'tcp',
  ): Promise<Buffer | undefined> {
    if (query.length < 12 || query.readUInt16BE(2) & 0x8000) return undefined;
    if (!client.answers()) return errorAnswer(query, RCODE_REFUSED);
    if (l.inFlight >= MAX_IN_FLIGHT) return errorAnswer(query, RCODE_SERVFAIL);
    l.inFlight++;
    try {
      const id = query.readUInt16BE(0);
      const answer = await this.ask(query, transport);
      if (!answer) return errorAnswer(query, RCODE_SERVFAIL);
      try {
        const resolved = resolvedOf(dns.decode(answer));
        if (resolved) await client.onAnswer(resolved);
      } catch (e) {
        this.options.log.warn({ err: e }, 'could not apply a DNS answer to the policy');
        return errorAnswer(query, RCODE_SERVFAIL);
      }
      answer.writeUInt16BE(id, 0);
      return answer;
    } finally {
      l.inFlight--;
    }
  }

  /** Asks each upstream in turn; the first matching answer, if any. */
  private async ask(query: Buffer, transport: 'udp' | 'tcp'): Promise<Buffer | undefined> {
    for (const up of this.options.upstreams) {
      const q = Buffer.from(query);
      const id = randomInt(0, 65536);
      q.writeUInt16BE(id, 0);
      const answer = await (transport === 'udp' ? this.askUdp(up, q) : this.askTcp(up, q)).catch(
        () => undefined,
      );
      // The answer must be to this query: its id and its question section.
      if (answer && answer.length >= 12 && answer.readUInt16BE(0) === id && sameQuestion(q, answer)) {
        return answer;
      }
    }
    return undefined;
  }

  private askUdp(up: DnsUpstream, q: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = createSocket('udp4');
      const done = (e?: Error, msg?: Buffer) => {
        clearTimeout(timer);
        s.close();
        if (msg) resolve(msg);
        else reject(e ?? new Error('no answer'));
      };
      const timer = setTimeout(() => done(new Error('timeout')), this.timeoutMs);
      s.on('error', (e) => done(e));
      s.on('message', (msg, rinfo) => {
        if (rinfo.address === up.host && rinfo.port === up.port && msg.readUInt16BE(0) === q.readUInt16BE(0))
          done(undefined, msg);
      });
      // Connected: a closed upstream port (ICMP unreachable) is an error at once, not a
      // wait for the timeout.
      s.connect(up.port, up.host, () => s.send(q));
    });
  }

  private askTcp(up: DnsUpstream, q: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: up.host, port: up.port });
      let buffered = Buffer.alloc(0);
      s.setTimeout(this.timeoutMs, () => s.destroy(new Error('timeout')));
      s.on('error', reject);
      s.on('close', () => reject(new Error('closed')));
      s.on('connect', () => {
        const len = Buffer.alloc(2);
        len.writeUInt16BE(q.length);
        s.write(Buffer.concat([len, q]));
      });
      s.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0)) {
          resolve(buffered.subarray(2, 2 + buffered.readUInt16BE(0)));
          s.destroy();
        }
      });
    });
  }
}

/** Whether the answer's question section is the query's (bytes after the header, up to the question's end). */
function sameQuestion(query: Buffer, answer: Buffer): boolean {
  try {
    const q = dns.decode(query).questions?.[0];
    const a = dns.decode(answer).questions?.[0];
    return !!q && !!a && lower(q.name) === lower(a.name) && q.type === a.type && q.class === a.class;
  } catch {
    return false;
  }
}

async function closeListener(l: Listener): Promise<void> {
  for (const c of l.connections) c.destroy();
  await Promise.all([
    new Promise<void>((r) => {
      try {
        l.udp.close(() => r());
      } catch {
        r();
      }
    }),
    new Promise<void>((r) => l.tcp.close(() => r())),
  ]);
}
