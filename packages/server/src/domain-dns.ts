// `aiva up --domain D --dns-listen ADDR:PORT`: a DNS server over UDP that knows one zone,
// D, where D and every name under it (api.D, {port}-{sandboxId}.D) have one address,
// aiva's. It answers those with authority and refuses every other name: it forwards
// nothing, asks no one and keeps no cache, so pointing a resolver at it for D only
// (dnsmasq's server=/D/…, systemd-resolved's ~D) cannot change how other names resolve.
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { isIP } from 'node:net';
import * as dns from 'dns-packet';
import type { Logger } from 'pino';

export interface DomainDnsConfig {
  /** The zone, lower case, no trailing dot. */
  domain: string;
  /** The address every name in the zone has (IPv4: A records; IPv6: AAAA records). */
  answer: string;
  host: string;
  /** 0 picks a free port. */
  port: number;
  logger?: Logger;
}

export interface DomainDns {
  host: string;
  port: number;
  close(): Promise<void>;
}

const TTL = 60;
const RCODE = { FORMERR: 1, NOTIMP: 4, REFUSED: 5 } as const;

/** `a.b.c.d:port` or `[v6]:port`. */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d{1,3}(?:\.\d{1,3}){3})):(\d{1,5})$/.exec(text);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!host || !isIP(host) || !Number.isInteger(port) || port > 65535)
    throw new Error(`bad listen address "${text}" (expected a.b.c.d:port or [v6]:port)`);
  return { host, port };
}

/** A header-only answer to a query that could not be read as one question. */
function errorAnswer(query: Buffer, rcode: number): Buffer {
  const out = Buffer.alloc(12);
  query.copy(out, 0, 0, 2);
  // QR, the query's opcode and RD; no RA: this server recurses for no one.
  out.writeUInt16BE(0x8000 | (query.readUInt16BE(2) & 0x7900) | rcode, 2);
  return out;
}

/** The answer to one query: undefined for what is not worth one (too short, not a query). */
export function answerQuery(query: Buffer, zone: { domain: string; answer: string }): Buffer | undefined {
  if (query.length < 12 || query.readUInt16BE(2) & 0x8000) return undefined;
  if (((query.readUInt16BE(2) >> 11) & 0xf) !== 0) return errorAnswer(query, RCODE.NOTIMP);
  let packet: dns.DecodedPacket;
  try {
    packet = dns.decode(query);
  } catch {
    return errorAnswer(query, RCODE.FORMERR);
  }
  const question = packet.questions?.[0];
  if (!question || packet.questions?.length !== 1) return errorAnswer(query, RCODE.FORMERR);
  const name = question.name.toLowerCase().replace(/\.$/, '');
  const inZone = name === zone.domain || name.endsWith(`.${zone.domain}`);
  const rd = packet.flag_rd ? dns.RECURSION_DESIRED : 0;
  if (!inZone || (question.class ?? 'IN') !== 'IN')
    return dns.encode({ id: packet.id, type: 'response', flags: rd | RCODE.REFUSED, questions: [question] });
  const family = isIP(zone.answer) === 6 ? 'AAAA' : 'A';
  const soa: dns.Answer = {
    type: 'SOA',
    name: zone.domain,
    ttl: TTL,
    data: {
      mname: zone.domain,
      rname: `hostmaster.${zone.domain}`,
      serial: 1,
      refresh: 3600,
      retry: 600,
      expire: 86400,
      minimum: TTL,
    },
  };
  const answers: dns.Answer[] = [];
  if (question.type === family || (question.type as string) === 'ANY')
    answers.push({ type: family, name: question.name, ttl: TTL, data: zone.answer } as dns.Answer);
  else if (question.type === 'SOA' && name === zone.domain) answers.push(soa);
  return dns.encode({
    id: packet.id,
    type: 'response',
    flags: rd | dns.AUTHORITATIVE_ANSWER,
    questions: [question],
    answers,
    // No data for this type (AAAA of an IPv4 zone, MX …): the SOA says how long to remember that.
    authorities: answers.length === 0 ? [soa] : [],
  });
}

/** Starts answering for `config.domain` on `config.host:config.port` (UDP). */
export async function startDomainDns(config: DomainDnsConfig): Promise<DomainDns> {
  if (!isIP(config.answer)) throw new Error(`bad DNS answer address "${config.answer}"`);
  const zone = { domain: config.domain.toLowerCase().replace(/\.$/, ''), answer: config.answer };
  const socket: Socket = createSocket({ type: isIP(config.host) === 6 ? 'udp6' : 'udp4' });
  socket.on('message', (query, peer) => {
    const reply = answerQuery(query, zone);
    if (reply) socket.send(reply, peer.port, peer.address);
  });
  // A send to a client that went away is that client's problem, not the server's.
  socket.on('error', (err) => config.logger?.warn({ err }, 'domain DNS socket error'));
  const listening = once(socket, 'listening');
  socket.bind(config.port, config.host);
  try {
    await listening;
  } catch (e) {
    socket.close();
    throw new Error(`cannot listen for DNS on ${config.host}:${config.port}: ${(e as Error).message}`);
  }
  const { port } = socket.address();
  return {
    host: config.host,
    port,
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
