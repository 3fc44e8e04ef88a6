// aiva's DNS listener for --domain, on loopback: what it answers for the zone, that it
// refuses every other name, and what it does with packets that are not one plain query.
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import * as dns from 'dns-packet';
import { answerQuery, type DomainDns, parseListen, startDomainDns } from '../src/domain-dns.js';

/** A decoded answer as the checks read it (dns-packet's types leave rcode out). */
type Reply = Omit<dns.DecodedPacket, 'answers' | 'authorities'> & {
  rcode: string;
  answers?: { type: string; name: string; data: unknown; ttl?: number }[];
  authorities?: { type: string; name: string }[];
};
const dec = (b: Buffer) => dns.decode(b) as unknown as Reply;

let server: DomainDns;
before(async () => {
  server = await startDomainDns({ domain: 'aiva.test', answer: '127.0.0.1', host: '127.0.0.1', port: 0 });
});
after(() => server.close());

/** Sends `query` to the listener; its answer, or undefined if none comes within 300 ms. */
async function ask(query: Buffer): Promise<Buffer | undefined> {
  const socket = createSocket('udp4');
  try {
    socket.send(query, server.port, '127.0.0.1');
    const answer = once(socket, 'message').then(([m]) => m as Buffer);
    const none = new Promise<undefined>((r) => setTimeout(r, 300, undefined));
    return await Promise.race([answer, none]);
  } finally {
    socket.close();
  }
}

const query = (name: string, type: dns.RecordType, klass: dns.RecordClass = 'IN') =>
  dns.encode({
    id: 4242,
    type: 'query',
    flags: dns.RECURSION_DESIRED,
    questions: [{ name, type, class: klass }],
  });

async function decoded(name: string, type: dns.RecordType, klass?: dns.RecordClass) {
  const a = await ask(query(name, type, klass));
  assert.ok(a, `an answer for ${name} ${type}`);
  return dec(a);
}

test('the zone and every name under it have aiva’s address, with authority', async () => {
  for (const name of ['aiva.test', 'api.aiva.test', '8000-abc123.aiva.test', 'a.b.AIVA.TEST.']) {
    const a = await decoded(name, 'A');
    assert.equal(a.id, 4242);
    assert.equal(a.rcode, 'NOERROR', name);
    assert.equal(a.flag_aa, true);
    assert.equal(a.flag_rd, true);
    assert.equal(a.flag_ra, false, 'it recurses for no one');
    assert.deepEqual(
      (a.answers ?? []).map((r) => [r.type, r.data, r.ttl]),
      [['A', '127.0.0.1', 60]],
      name,
    );
  }
});

test('other types in the zone have no data (NODATA with the zone’s SOA), not an error', async () => {
  for (const type of ['AAAA', 'MX', 'TXT'] as const) {
    const a = await decoded('api.aiva.test', type);
    assert.equal(a.rcode, 'NOERROR', type);
    assert.deepEqual(a.answers, [], type);
    assert.deepEqual(
      (a.authorities ?? []).map((r) => [r.type, r.name]),
      [['SOA', 'aiva.test']],
    );
  }
  const soa = await decoded('aiva.test', 'SOA');
  assert.deepEqual(
    (soa.answers ?? []).map((r) => r.type),
    ['SOA'],
  );
});

test('every name outside the zone is refused, with nothing in the answer', async () => {
  for (const name of ['example.com', 'aiva.test.example.com', 'xaiva.test', 'test', 'localhost', '']) {
    const a = await decoded(name, 'A');
    assert.equal(a.rcode, 'REFUSED', name);
    assert.equal(a.flag_aa, false);
    assert.equal(a.flag_ra, false);
    assert.deepEqual([a.answers, a.authorities], [[], []], name);
  }
  assert.equal((await decoded('api.aiva.test', 'A', 'CH')).rcode, 'REFUSED', 'another class');
});

test('packets that are not one plain query get an error or nothing', async () => {
  assert.equal(await ask(Buffer.from('short')), undefined, 'too short for a header');
  const response = dns.encode({ id: 1, type: 'response', questions: [{ name: 'aiva.test', type: 'A' }] });
  assert.equal(await ask(response), undefined, 'a response is not answered');
  const garbage = Buffer.concat([query('aiva.test', 'A').subarray(0, 12), Buffer.from([0xff, 0xff, 0xff])]);
  assert.equal(dec((await ask(garbage)) as Buffer).rcode, 'FORMERR');
  const two = dns.encode({
    id: 7,
    type: 'query',
    questions: [
      { name: 'aiva.test', type: 'A' },
      { name: 'api.aiva.test', type: 'A' },
    ],
  });
  assert.equal(dec((await ask(two)) as Buffer).rcode, 'FORMERR');
  const notify = Buffer.from(query('aiva.test', 'A'));
  notify.writeUInt16BE((4 << 11) | 0x0100, 2);
  assert.equal(dec((await ask(notify)) as Buffer).rcode, 'NOTIMP');
  // It still answers after all that.
  assert.equal((await decoded('api.aiva.test', 'A')).rcode, 'NOERROR');
});

test('an IPv6 answer address gives AAAA records and no A records', () => {
  const zone = { domain: 'aiva.test', answer: 'fd00::1' };
  const aaaa = dec(answerQuery(query('api.aiva.test', 'AAAA'), zone) as Buffer);
  assert.deepEqual(
    (aaaa.answers ?? []).map((r) => [r.type, r.data]),
    [['AAAA', 'fd00::1']],
  );
  const a = dec(answerQuery(query('api.aiva.test', 'A'), zone) as Buffer);
  assert.deepEqual([a.rcode, a.answers], ['NOERROR', []]);
});

test('listen addresses: a.b.c.d:port or [v6]:port', async () => {
  assert.deepEqual(parseListen('127.0.0.1:5353'), { host: '127.0.0.1', port: 5353 });
  assert.deepEqual(parseListen('[::1]:53'), { host: '::1', port: 53 });
  for (const bad of ['127.0.0.1', 'localhost:53', '::1:53', '127.0.0.1:70000', '300.0.0.1:53'])
    assert.throws(() => parseListen(bad), /bad listen address/, bad);
  await assert.rejects(
    startDomainDns({ domain: 'aiva.test', answer: '127.0.0.1', host: '127.0.0.1', port: server.port }),
    /cannot listen for DNS on 127\.0\.0\.1:\d+/,
  );
});
