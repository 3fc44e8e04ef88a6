// Egress metering through the real `aiva up` (containers) and the e2b SDK, against the test
// "internet" of network.test.ts (a namespace behind the host's NAT, at 198.18.0.0/15):
// bytes a sandbox sends out of the host are counted by its nftables counter, sampled by
// the server and recorded per interval, and the usage report shows them and prices them.
// What is dropped (blocked ranges, the host's own addresses, its policy's deny) and what
// it downloads is not egress; its counter goes with it. Nothing here sends traffic to any
// address outside the test internet.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { TestInternet } from '@aiva/node/testkit';
import { Sandbox } from 'e2b';
import { type AivaUp, aivaUp, removeHome, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';

const INTERVAL_S = 2;
const PAYLOAD = 5 * 1024 * 1024;
/** The price of an egress GiB (everything else is free here). */
const EGRESS_GIB_PRICE = 10;
const GIB = 1024 ** 3;
/** What a sandbox may send of its own besides what the test makes it send (TCP handshakes, ACKs). */
const SLACK = 64 * 1024;
const [WEB1, WEB2] = TestInternet.WEB;
const [FORBIDDEN] = TestInternet.FORBIDDEN;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let up: AivaUp;
let inet: TestInternet;
let dir: string;
const upArgs = () => [
  '--dns',
  inet.dnsUpstream,
  '--metering-interval',
  String(INTERVAL_S),
  '--prices',
  join(dir, 'prices.json'),
];
before(async () => {
  inet = await TestInternet.start({ 'web.test': { A: [WEB1 as string] } });
  dir = await mkdtemp(join(tmpdir(), 'aiva-egress-prices-'));
  await writeFile(
    join(dir, 'prices.json'),
    JSON.stringify({
      currency: 'EUR',
      prices: [{ effectiveFrom: '2026-01-01', egressGiB: EGRESS_GIB_PRICE }],
    }),
  );
  up = await aivaUp(upArgs());
  useServer(up);
});
after(async () => {
  const code = await up?.stop();
  await inet?.stop();
  await rm(dir, { recursive: true, force: true });
  assert.equal(code, 0, up?.output());
  await removeHome(up.home);
});
// Registered after the hooks above: `after` hooks run in the order they were added.
checkHostLeaks();

interface UsageItem {
  sandboxID: string;
  egressBytes: number;
  cost: number;
}

/** The sandbox's usage since `from` (the report by sandbox). */
async function usageOf(id: string, from: Date): Promise<UsageItem> {
  const q = new URLSearchParams({
    from: from.toISOString(),
    to: new Date().toISOString(),
    groupBy: 'sandbox',
  });
  const r = await fetch(`${up.url}/v1/usage?${q}`, { headers: { 'x-api-key': up.apiKey } });
  const body = (await r.json()) as { items: UsageItem[] };
  assert.equal(r.status, 200, JSON.stringify(body));
  const item = body.items.find((i) => i.sandboxID === id);
  assert.ok(item, `no usage of ${id} in ${JSON.stringify(body)}`);
  return item;
}

/**
 * The sandbox's egress once everything it did before now is recorded: the server has
 * taken a sample after now (the node's counter read after it) and the meter has written
 * a record after that sample.
 */
async function egressSoFar(sbx: Sandbox, from: Date): Promise<number> {
  const now = Date.now();
  for (let i = 0; ; i++) {
    const samples = await sbx.getMetrics();
    if (samples.some((m) => m.timestamp.getTime() >= now + 1000)) break;
    assert.ok(i < 60, 'no metrics sample after the traffic');
    await sleep(500);
  }
  await sleep(2 * INTERVAL_S * 1000);
  return (await usageOf(sbx.sandboxId, from)).egressBytes;
}

/** The node's egress counters (bytes), by name. */
async function counters(): Promise<Map<string, number>> {
  const { stdout } = await promisify(execFile)('nft', ['-j', 'list', 'counters', 'table', 'inet', 'aiva']);
  const list = (JSON.parse(stdout) as { nftables: { counter?: { name: string; bytes: number } }[] }).nftables;
  return new Map(list.flatMap((e) => (e.counter ? [[e.counter.name, e.counter.bytes]] : [])));
}

/** Whether the node's nftables table has the sandbox's egress counter. */
async function hasCounter(id: string): Promise<boolean> {
  return (await counters()).has(`sb-${id}-egress`);
}

/** Sends `bytes` to a server of the test internet, which says how many it received. */
async function upload(sbx: Sandbox, bytes: number): Promise<void> {
  const r = await sbx.commands.run(
    `head -c ${bytes} /dev/zero > /tmp/payload && curl -s -m 60 --data-binary @/tmp/payload http://${WEB1}/`,
  );
  assert.equal((JSON.parse(r.stdout) as { received: number }).received, bytes, r.stdout);
}

test('what a sandbox sends out is metered, priced and reported; what is dropped, stays on the host or comes in is not', {
  timeout: 240_000,
}, async (t) => {
  const started = new Date();
  const sbx = await Sandbox.create({ timeoutMs: 200_000 });
  const id = sbx.sandboxId;
  assert.ok(await hasCounter(id), 'the sandbox has its egress counter');

  // Dropped: 5 MB of UDP each to a blocked range, to the host (its gateway), and to an
  // address its policy denies; and DNS lookups, answered by the node's forwarder.
  await sbx.updateNetwork({ denyOut: [`${WEB2}/32`] });
  const gateway = (await sbx.commands.run("ip route | awk '/default/ {print $3}'")).stdout.trim();
  assert.match(gateway, /^\d+\.\d+\.\d+\.\d+$/);
  const blast = [
    'import socket, sys',
    's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
    'b = b"x" * 1000',
    'for a in sys.argv[1:]:',
    '    for _ in range(5 * 1024 * 1024 // 1000):',
    '        s.sendto(b, (a, 9))',
    'for _ in range(20):',
    '    socket.getaddrinfo("web.test", 80)',
  ].join('\n');
  await sbx.files.write('/tmp/blast.py', blast);
  const sent = await sbx.commands.run(`python3 /tmp/blast.py ${FORBIDDEN} ${gateway} ${WEB2}`);
  assert.equal(sent.exitCode, 0, sent.stderr);
  await sbx.updateNetwork({});
  const dropped = await egressSoFar(sbx, started);
  assert.ok(
    dropped < SLACK,
    `15 MB dropped and DNS to the host are not egress, yet ${dropped} bytes were counted`,
  );

  // Sent out: 5 MB to a server of the test internet, by name, which says it received them all.
  const sentByName = await sbx.commands.run(
    `head -c ${PAYLOAD} /dev/zero > /tmp/payload && curl -s -m 60 --data-binary @/tmp/payload http://web.test/`,
  );
  assert.equal((JSON.parse(sentByName.stdout) as { received: number }).received, PAYLOAD, sentByName.stdout);
  const uploaded = (await egressSoFar(sbx, started)) - dropped;
  assert.ok(
    uploaded >= PAYLOAD && uploaded < 1.2 * PAYLOAD + SLACK,
    `5 MB sent out, and ${uploaded} bytes counted`,
  );

  // Came in: a 5 MB download costs the sandbox its ACKs only.
  const download = await sbx.commands.run(
    `curl -s -m 60 -o /dev/null -w '%{size_download}' 'http://${WEB1}/bytes?n=${PAYLOAD}'`,
  );
  assert.equal(Number(download.stdout), PAYLOAD);
  const downloaded = (await egressSoFar(sbx, started)) - dropped - uploaded;
  assert.ok(downloaded < 0.1 * PAYLOAD, `a download is not egress, yet ${downloaded} bytes were counted`);

  // E2B's metrics stay as E2B has them: no egress there.
  const raw = await fetch(`${up.url}/sandboxes/${id}/metrics`, { headers: { 'x-api-key': up.apiKey } });
  const metrics = (await raw.json()) as Record<string, unknown>[];
  assert.ok(metrics.length > 0 && metrics.every((m) => !('egressBytes' in m)), JSON.stringify(metrics[0]));

  t.diagnostic(
    `counted: ${dropped} B of dropped traffic, ${uploaded} B for the upload, ${downloaded} B for the download`,
  );

  // Paused and resumed: nothing while paused, nothing counted twice after.
  assert.equal(await sbx.pause(), true);
  await sleep(2 * INTERVAL_S * 1000);
  const resumed = await Sandbox.connect(id);
  const afterPause = (await egressSoFar(resumed, started)) - dropped - uploaded - downloaded;
  assert.ok(afterPause >= 0 && afterPause < SLACK, `${afterPause} bytes counted over a pause`);

  // Gone with the sandbox: its counter, and nothing counted after its end.
  const total = dropped + uploaded + downloaded + afterPause;
  await sbx.kill();
  assert.equal(await hasCounter(id), false, 'the killed sandbox’s counter is gone');
  await sleep(2 * INTERVAL_S * 1000);
  const whole = await usageOf(id, started);
  assert.ok(
    whole.egressBytes >= total && whole.egressBytes < total + SLACK,
    `its whole life: ${whole.egressBytes} bytes, ${total} of them recorded while it ran`,
  );
  // Priced: only egress costs anything here.
  assert.ok(
    Math.abs(whole.cost - (whole.egressBytes / GIB) * EGRESS_GIB_PRICE) < 1e-5,
    `cost ${whole.cost} for ${whole.egressBytes} bytes`,
  );
});

test('the count goes on across a crash and restart of aiva up: not reset, lost or counted twice', {
  timeout: 240_000,
}, async () => {
  const started = new Date();
  const sbx = await Sandbox.create({ timeoutMs: 200_000 });
  const id = sbx.sandboxId;
  await upload(sbx, PAYLOAD);
  const beforeCrash = await egressSoFar(sbx, started);
  assert.ok(
    beforeCrash >= PAYLOAD && beforeCrash < 1.2 * PAYLOAD + SLACK,
    `${beforeCrash} bytes for ${PAYLOAD}`,
  );
  const counted = (await counters()).get(`sb-${id}-egress`) ?? 0;

  await up.crash();
  up = await aivaUp(upArgs(), { home: up.home });
  useServer(up);
  // The node's new table took the counter over, with what it had counted.
  assert.ok(
    ((await counters()).get(`sb-${id}-egress`) ?? 0) >= counted,
    'the egress counter goes on after the node restarts',
  );
  const again = await Sandbox.connect(id);
  await upload(again, PAYLOAD);
  const afterCrash = (await egressSoFar(again, started)) - beforeCrash;
  assert.ok(
    afterCrash >= PAYLOAD && afterCrash < 1.2 * PAYLOAD + SLACK,
    `${afterCrash} bytes counted for ${PAYLOAD} sent after the restart (${beforeCrash} before it)`,
  );
  await again.kill();
  assert.equal(await hasCounter(id), false);
});
