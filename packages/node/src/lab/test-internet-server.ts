// The servers of the test "internet" (see test-internet.ts), run inside its namespace:
// HTTP on port 80 of each web address, a TCP echo on port 7 of each, and a DNS server
// (UDP and TCP, port 53) answering from a JSON file that is read again for every query,
// so that a test can change the records between two queries.
//
//   node test-internet-server.js CONFIG.json
//   CONFIG = { web: ["198.18.1.10", …], dns: "198.18.1.53", records: "/path/records.json" }
//   records.json = { "name.test": { "A": ["198.18.1.10"], "CNAME": "other.test", "ttl": 60 } }
//
// Prints "ready" on stdout once everything listens.
import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type Server } from 'node:net';
import * as dns from 'dns-packet';

interface Config {
  web: string[];
  dns: string;
  records: string;
}
type Records = Record<string, { A?: string[]; CNAME?: string; ttl?: number }>;

const config = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as Config;

function answer(query: Buffer): Buffer {
  const q = dns.decode(query);
  const question = q.questions?.[0];
  const records = JSON.parse(readFileSync(config.records, 'utf8')) as Records;
  const answers: dns.Answer[] = [];
  let name = question?.name.toLowerCase() ?? '';
  let rcode = 0;
  for (let hops = 0; hops < 8; hops++) {
    const r = records[name];
    if (!r) {
      if (hops === 0) rcode = 3; // NXDOMAIN
      break;
    }
    const ttl = r.ttl ?? 60;
    if (r.CNAME) {
      answers.push({ type: 'CNAME', name, ttl, class: 'IN', data: r.CNAME });
      name = r.CNAME;
      continue;
    }
    if (question?.type === 'A') {
      for (const a of r.A ?? []) answers.push({ type: 'A', name, ttl, class: 'IN', data: a });
    }
    break;
  }
  return dns.encode({
    id: q.id,
    type: 'response',
    flags: dns.RECURSION_DESIRED | dns.RECURSION_AVAILABLE | dns.AUTHORITATIVE_ANSWER | rcode,
    questions: q.questions,
    answers,
  });
}

const listening: Promise<void>[] = [];
const listen = (s: Server, host: string, port: number) =>
  listening.push(new Promise((r) => s.listen({ host, port }, () => r())));

for (const host of config.web) {
  const http = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/bytes') {
      // Download: n bytes of zeros.
      let left = Number(url.searchParams.get('n') ?? 0);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
      const chunk = Buffer.alloc(1 << 20);
      const write = () => {
        while (left > 0) {
          const part = chunk.subarray(0, Math.min(left, chunk.length));
          left -= part.length;
          if (!res.write(part)) return void res.once('drain', write);
        }
        res.end();
      };
      write();
      return;
    }
    let received = 0;
    req.on('data', (c: Buffer) => {
      received += c.length;
    });
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ server: host, client: req.socket.remoteAddress, received }));
    });
  });
  listen(http as unknown as Server, host, 80);
  const echo = createTcpServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  listen(echo, host, 7);
}

const udp = createSocket('udp4');
udp.on('message', (msg, rinfo) => {
  try {
    udp.send(answer(msg), rinfo.port, rinfo.address);
  } catch {
    // not a query we can read
  }
});
listening.push(new Promise((r) => udp.bind({ address: config.dns, port: 53 }, () => r())));
const tcpDns = createTcpServer((s) => {
  let buf = Buffer.alloc(0);
  s.on('error', () => {});
  s.on('data', (c) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
      const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
      buf = buf.subarray(2 + msg.length);
      const out = answer(Buffer.from(msg));
      const len = Buffer.alloc(2);
      len.writeUInt16BE(out.length);
      s.write(Buffer.concat([len, out]));
    }
  });
});
listen(tcpDns, config.dns, 53);

await Promise.all(listening);
process.stdout.write('ready\n');
process.on('SIGTERM', () => process.exit(0));
