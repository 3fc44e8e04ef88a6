// The DNS forwarder on loopback: passes queries through (UDP and TCP) to an upstream the
// test runs, shows each answer's CNAME chain and addresses to the sandbox's policy before
// answering, refuses when told to, answers only its own client, fails cleanly when the
// upstream is silent.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect, createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import * as dns from 'dns-packet';
import { pino } from 'pino';
import { DnsForwarder, type ResolvedAnswer, resolvedOf } from '../src/network/dns-forwarder.js';

const FORWARDER = '127.0.0.2';
const CLIENT = '127.0.0.1';
const log = pino({ level: 'silent' });

/** An upstream on 127.0.0.3:5353 (UDP and TCP) answering web.test (via alias.test) and nothing else. */
function upstreamAnswer(query: Buffer): Buffer {
  const q = dns.decode(query);
  const name = q.questions?.[0]?.name ?? '';
  const answers: dns.Answer[] =
    name === 'alias.test'
      ? [
          { type: 'CNAME', name: 'alias.test', ttl: 300, data: 'web.test' },
          { type: 'A', name: 'web.test', ttl: 120, data: '198.18.1.10' },
          { type: 'A', name: 'web.test', ttl: 120, data: '198.18.1.11' },
        ]
      : [];
  return dns.encode({
    id: q.id,
    type: 'response',
    flags: dns.RECURSION_AVAILABLE | (answers.length ? 0 : 3),
    questions: q.questions,
    answers,
  });
}

/** The response code (dns-packet decodes it; its types do not declare it). */
const rcode = (p: dns.DecodedPacket) => (p as { rcode?: string }).rcode;

const query = (name: string, id = 4242) =>
  dns.encode({ id, type: 'query', flags: dns.RECURSION_DESIRED, questions: [{ type: 'A', name }] });

function askUdp(msg: Buffer, from = CLIENT, timeoutMs = 1500): Promise<dns.DecodedPacket | 'timeout'> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const timer = setTimeout(() => {
      s.close();
      resolve('timeout');
    }, timeoutMs);
    s.on('message', (m) => {
      clearTimeout(timer);
      s.close();
      resolve(dns.decode(m));
    });
    s.bind({ address: from, port: 0 }, () => s.send(msg, 53, FORWARDER));
  });
}

function askTcp(msg: Buffer): Promise<dns.DecodedPacket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: FORWARDER, port: 53, localAddress: CLIENT });
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.on('connect', () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(msg.length);
      s.write(Buffer.concat([len, msg]));
    });
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        resolve(dns.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        s.destroy();
      }
    });
  });
}

describe('DNS forwarder', () => {
  const udp = createSocket('udp4');
  const tcp = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (c) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const out = upstreamAnswer(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        const len = Buffer.alloc(2);
        len.writeUInt16BE(out.length);
        s.end(Buffer.concat([len, out]));
      }
    });
  });
  const seen: ResolvedAnswer[] = [];
  let refuse = false;
  const forwarder = new DnsForwarder({ upstreams: [{ host: '127.0.0.3', port: 5353 }], timeoutMs: 500, log });
  const silent = new DnsForwarder({ upstreams: [{ host: '127.0.0.3', port: 5354 }], timeoutMs: 300, log });

  before(async () => {
    udp.on('message', (m, r) => udp.send(upstreamAnswer(m), r.port, r.address));
    await new Promise<void>((r) => udp.bind({ address: '127.0.0.3', port: 5353 }, () => r()));
    await new Promise<void>((r) => tcp.listen({ host: '127.0.0.3', port: 5353 }, () => r()));
    await forwarder.listen('s1', FORWARDER, CLIENT, {
      answers: () => !refuse,
      onAnswer: async (a) => {
        seen.push(a);
      },
    });
  });
  after(async () => {
    await forwarder.close();
    await silent.close();
    udp.close();
    tcp.close();
  });

  test('passes a query through and shows the CNAME chain and addresses first (UDP)', async () => {
    seen.length = 0;
    const a = await askUdp(query('alias.test', 777));
    assert.notEqual(a, 'timeout');
    if (a === 'timeout') return;
    assert.equal(a.id, 777, 'the answer carries the id of the query');
    assert.equal(rcode(a), 'NOERROR');
    assert.deepEqual(
      a.answers?.map((r) => (r as { data?: unknown }).data),
      ['web.test', '198.18.1.10', '198.18.1.11'],
    );
    assert.deepEqual(seen, [
      { names: ['alias.test', 'web.test'], addresses: ['198.18.1.10', '198.18.1.11'], ttl: 120 },
    ]);
  });

  test('over TCP too', async () => {
    const a = await askTcp(query('alias.test', 9));
    assert.equal(a.id, 9);
    assert.equal(a.answers?.length, 3);
  });

  test('NXDOMAIN passes through', async () => {
    const a = await askUdp(query('nothing.test'));
    assert.notEqual(a, 'timeout');
    if (a !== 'timeout') assert.equal(rcode(a), 'NXDOMAIN');
  });

  test('refuses when the policy says so, without asking upstream', async () => {
    refuse = true;
    seen.length = 0;
    try {
      const a = await askUdp(query('alias.test'));
      assert.notEqual(a, 'timeout');
      if (a !== 'timeout') assert.equal(rcode(a), 'REFUSED');
      assert.deepEqual(seen, []);
    } finally {
      refuse = false;
    }
  });

  test('answers only its own client', async () => {
    assert.equal(await askUdp(query('alias.test'), '127.0.0.4', 500), 'timeout');
  });

  test('a silent upstream is SERVFAIL', async () => {
    await silent.listen('s2', '127.0.0.5', CLIENT, { answers: () => true, onAnswer: async () => {} });
    const a = await new Promise<dns.DecodedPacket>((resolve) => {
      const s = createSocket('udp4');
      s.on('message', (m) => {
        s.close();
        resolve(dns.decode(m));
      });
      s.bind({ address: CLIENT, port: 0 }, () => s.send(query('alias.test'), 53, '127.0.0.5'));
    });
    assert.equal(rcode(a), 'SERVFAIL');
  });

  test('a second listener on the same address is refused clearly', async () => {
    await assert.rejects(
      forwarder.listen('s3', FORWARDER, CLIENT, { answers: () => true, onAnswer: async () => {} }),
      /cannot serve DNS on 127.0.0.2:53/,
    );
  });
});

test('resolvedOf follows CNAMEs from the question only', () => {
  const r = resolvedOf(
    dns.decode(
      dns.encode({
        type: 'response',
        questions: [{ type: 'A', name: 'A.test' }],
        answers: [
          { type: 'CNAME', name: 'a.test', ttl: 50, data: 'b.test' },
          { type: 'A', name: 'b.test', ttl: 70, data: '1.1.1.1' },
          { type: 'A', name: 'unrelated.test', ttl: 70, data: '2.2.2.2' },
        ],
      }),
    ),
  );
  assert.deepEqual(r, { names: ['a.test', 'b.test'], addresses: ['1.1.1.1'], ttl: 50 });
});
