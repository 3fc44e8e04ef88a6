// The egress policy model: validation (clear errors), normalization, compilation, domain
// matching; and the nftables scripts generated from it, checked by the kernel (`nft -c`)
// in a throwaway network namespace.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { runCommand, SandboxSpecError, validateNetworkPolicy } from '../src/index.js';
import { compilePolicy, domainMatches } from '../src/network/network-policy.js';
import {
  addResolvedScript,
  addSandboxScript,
  removeSandboxScript,
  updatePolicyScript,
  wholeTableScript,
} from '../src/network/nft-ruleset.js';

describe('validateNetworkPolicy', () => {
  test('normalizes addresses, blocks and names', () => {
    assert.deepEqual(
      validateNetworkPolicy({
        allowInternetAccess: false,
        allowOut: ['8.8.8.8', '1.2.3.4/24', 'Example.COM.', '*.Example.org', '8.8.8.8/32'],
        denyOut: ['0.0.0.0/0', 'evil.test'],
      }),
      {
        allowInternetAccess: false,
        allowOut: ['8.8.8.8', '1.2.3.0/24', 'example.com', '*.example.org'],
        denyOut: ['0.0.0.0/0', 'evil.test'],
      },
    );
    assert.deepEqual(validateNetworkPolicy(undefined), {});
    assert.deepEqual(validateNetworkPolicy({ allowOut: [], denyOut: [] }), {});
  });

  const bad: [unknown, RegExp][] = [
    ['everything', /network must be an object/],
    [{ allowOut: 'example.com' }, /network.allowOut must be a list of strings/],
    [{ allowOut: [42] }, /network.allowOut\[0\] must be a string, not number/],
    [{ allowInternetAccess: 'no' }, /allowInternetAccess must be true or false/],
    [{ allow_out: [] }, /network.allow_out is not a network policy setting/],
    [
      { denyOut: ['1.2.3.4', '300.1.1.1'] },
      /network.denyOut\[1\] "300.1.1.1" is not a valid IPv4 address or CIDR block/,
    ],
    [{ denyOut: ['1.2.3.4/33'] }, /"1.2.3.4\/33" is not a valid IPv4 address or CIDR block/],
    [{ denyOut: ['1.2.3'] }, /"1.2.3" is not a valid IPv4 address/],
    [{ denyOut: ['2001:db8::/32'] }, /IPv6 is not supported/],
    [{ allowOut: ['exa mple.com'] }, /"exa mple.com" is not an IPv4 address, a CIDR block, a domain name/],
    [{ allowOut: ['*'] }, /"\*" is not an IPv4 address/],
    [{ allowOut: ['a.*.com'] }, /is not an IPv4 address/],
    [{ allowOut: ['-bad.com'] }, /is not an IPv4 address/],
    [
      { allowOut: ['10.1.2.3'] },
      /"10.1.2.3" lies in 10.0.0.0\/8, a private range \(RFC 1918\), which sandboxes can never reach/,
    ],
    [{ allowOut: ['169.254.169.254'] }, /link-local and cloud metadata/],
    [{ allowOut: ['127.0.0.1'] }, /loopback/],
    [{ allowOut: ['100.64.0.0/16'] }, /carrier-grade NAT/],
    [{ allowOut: Array(1001).fill('1.1.1.1') }, /1001 entries; at most 1000/],
  ];
  for (const [input, error] of bad) {
    test(`refuses ${JSON.stringify(input).slice(0, 60)}`, () => {
      assert.throws(
        () => validateNetworkPolicy(input),
        (e: Error) => e instanceof SandboxSpecError && error.test(e.message),
      );
    });
  }

  test('a denied private range is fine (it is denied anyway)', () => {
    assert.deepEqual(validateNetworkPolicy({ denyOut: ['10.0.0.0/8'] }), { denyOut: ['10.0.0.0/8'] });
  });
});

describe('compilePolicy', () => {
  test('allow_internet_access=false is denyOut 0.0.0.0/0, and DNS is refused when nothing is allowed', () => {
    assert.deepEqual(compilePolicy({ allowInternetAccess: false }), {
      allowCidrs: [],
      denyCidrs: ['0.0.0.0/0'],
      allowNames: [],
      denyNames: [],
      dns: false,
    });
    const c = compilePolicy({
      allowInternetAccess: false,
      allowOut: ['web.test', '198.18.1.0/24'],
      denyOut: ['x.test'],
    });
    assert.deepEqual(c, {
      allowCidrs: ['198.18.1.0/24'],
      denyCidrs: ['0.0.0.0/0'],
      allowNames: ['web.test'],
      denyNames: ['x.test'],
      dns: true,
    });
    assert.equal(compilePolicy({}).dns, true);
  });
});

test('domain patterns', () => {
  assert.ok(domainMatches('example.com', 'EXAMPLE.com.'));
  assert.ok(!domainMatches('example.com', 'www.example.com'));
  assert.ok(domainMatches('*.example.com', 'www.example.com'));
  assert.ok(domainMatches('*.example.com', 'a.b.example.com'));
  assert.ok(!domainMatches('*.example.com', 'example.com'), 'a wildcard does not match the apex');
  assert.ok(!domainMatches('*.example.com', 'badexample.com'));
});

describe('nftables scripts', () => {
  const sandbox = {
    id: 'abc123',
    hostIf: 'aiva7',
    address: '10.11.0.30',
    policy: compilePolicy({ allowInternetAccess: false, allowOut: ['198.18.1.0/24', '1.1.1.1', 'web.test'] }),
  };
  const table = {
    blocked: ['10.0.0.0/8', '169.254.0.0/16'],
    sandboxBlock: '10.11.0.0/16',
    confineForwarding: true,
  };

  /** Applies the scripts in order in a throwaway network namespace; the kernel checks them. */
  async function applyInScratchNamespace(scripts: string[]): Promise<string> {
    const sh = scripts.map((_, i) => `nft -f /dev/fd/${i + 3}`).join(' && ');
    const wrapped = scripts.map((s, i) => `exec ${i + 3}<<'EOF${i}'\n${s}EOF${i}\n`).join('');
    const { stdout } = await runCommand('unshare', [
      '--net',
      'sh',
      '-e',
      '-c',
      `${wrapped}${sh} && nft list table inet aiva`,
    ]);
    return stdout;
  }

  test('the kernel takes the whole table, a sandbox, its updates, resolved names and its removal', async () => {
    const out = await applyInScratchNamespace([
      wholeTableScript(table, []),
      addSandboxScript(sandbox),
      updatePolicyScript(
        { ...sandbox, policy: compilePolicy({ denyOut: ['1.2.3.0/24', 'x.test'] }) },
        { allow: [], deny: [{ address: '5.6.7.8', timeoutS: 60 }] },
      ),
      addResolvedScript(sandbox.id, 'deny', [{ address: '5.6.7.8', timeoutS: 300 }]),
      addResolvedScript(sandbox.id, 'allow', [{ address: '9.9.9.9', timeoutS: 30 }]),
    ]);
    assert.match(out, /"aiva7" : jump sb-abc123/);
    assert.match(out, /set sb-abc123-deny \{[^}]*elements = \{ 1\.2\.3\.0\/24 \}/s);
    assert.match(out, /set sb-abc123-denyname \{[^}]*5\.6\.7\.8 timeout 5m/s);
    assert.match(out, /set sb-abc123-allowname \{[^}]*9\.9\.9\.9 timeout 30s/s);
    assert.match(out, /ip saddr != 10\.11\.0\.30 drop/);
    assert.match(out, /iifname != "aiva\*" drop/);

    const removed = await applyInScratchNamespace([
      wholeTableScript(table, [{ s: sandbox, resolved: { allow: [], deny: [] } }]),
      removeSandboxScript(sandbox),
    ]);
    assert.doesNotMatch(removed, /abc123/);
  });

  test('a sandbox’s egress counter is made with its chain, keyed by its link, and deleted with it', async () => {
    const add = addSandboxScript(sandbox);
    assert.match(add, /^add counter inet aiva sb-abc123-egress$/m);
    assert.match(add, /^add element inet aiva egress \{ "aiva7" : "sb-abc123-egress" \}$/m);
    const remove = removeSandboxScript(sandbox);
    const lines = remove.trim().split('\n');
    const entry = lines.indexOf('delete element inet aiva egress { "aiva7" }');
    const counter = lines.indexOf('delete counter inet aiva sb-abc123-egress');
    assert.ok(entry >= 0 && counter > entry, `the map entry goes before its counter:\n${remove}`);
    const whole = wholeTableScript(table, []);
    assert.match(whole, /chain egress \{\s+type filter hook postrouting priority srcnat - 1; policy accept;/);
    assert.match(whole, /iifname "aiva\*" oifname != "aiva\*" counter name iifname map @egress/);

    const out = await applyInScratchNamespace([
      wholeTableScript(table, []),
      addSandboxScript(sandbox),
      // Added again (a repair): the counter is kept, not made anew.
      addSandboxScript(sandbox),
    ]);
    assert.match(out, /counter sb-abc123-egress \{\s+packets 0 bytes 0/);
    assert.match(out, /elements = \{ "aiva7" : "sb-abc123-egress" \}/);
    const removed = await applyInScratchNamespace([
      wholeTableScript(table, []),
      addSandboxScript(sandbox),
      remove,
    ]);
    assert.doesNotMatch(removed, /sb-abc123-egress/, 'no counter left behind');
    assert.match(removed, /map egress/);
  });

  test('a whole-table install carries each sandbox’s egress count over', async () => {
    const out = await applyInScratchNamespace([
      wholeTableScript(table, [
        { s: sandbox, resolved: { allow: [], deny: [] }, egress: { packets: 12, bytes: 34_567 } },
      ]),
    ]);
    assert.match(out, /counter sb-abc123-egress \{\s+packets 12 bytes 34567/);
  });

  test('a whole-table install replaces the previous table atomically and keeps resolved addresses', async () => {
    const out = await applyInScratchNamespace([
      wholeTableScript(table, [{ s: sandbox, resolved: { allow: [], deny: [] } }]),
      wholeTableScript({ ...table, confineForwarding: false }, [
        {
          s: { ...sandbox, id: 'other', hostIf: 'aiva9' },
          resolved: { allow: [{ address: '4.4.4.4', timeoutS: 90 }], deny: [] },
        },
      ]),
    ]);
    assert.doesNotMatch(out, /abc123/);
    assert.doesNotMatch(out, /iifname != "aiva\*" drop/);
    assert.match(out, /set sb-other-allowname \{[^}]*4\.4\.4\.4 timeout 1m30s/s);
  });
});
