// The gateway on this host, with real MCP servers of its kind (a stdio server in Python's
// standard library, twice, so that tool names clash; one that crashes; one that never
// answers) and the official MCP SDK's client over Streamable HTTP; and its config parser.
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { ConfigError, parseGatewayConfig } from '../src/gateway-config.js';
import { serveGateway } from '../src/gateway-server.js';
import { Upstream } from '../src/upstreams.js';

const echo = fileURLToPath(new URL('../../test/fixtures/echo-mcp-server.py', import.meta.url));

describe('gateway config', () => {
  test('npm, pypi and custom servers become commands', () => {
    const [npm, pypi, custom] = parseGatewayConfig(
      JSON.stringify({
        'npm/@modelcontextprotocol/server-filesystem': { args: ['/tmp'] },
        'pypi/mcp-echo==1.0': { command: 'mcp-echo', envs: { A: 'b' } },
        mine: { runCmd: 'python3 /srv/server.py', initTimeoutSeconds: 5 },
      }),
    );
    assert.deepEqual(
      [npm?.command, npm?.args],
      ['npx', ['-y', '@modelcontextprotocol/server-filesystem', '/tmp']],
    );
    assert.equal(pypi?.command, '/var/lib/mcp-gateway/venvs/mcp-echo/bin/mcp-echo');
    assert.deepEqual(pypi?.env, { A: 'b' });
    assert.ok(pypi?.install?.args.includes('mcp-echo==1.0'));
    assert.deepEqual(
      [custom?.command, custom?.args, custom?.initTimeoutMs],
      ['/bin/sh', ['-c', 'python3 /srv/server.py'], 5000],
    );
  });

  test('what it cannot run is refused, naming the key and the field', () => {
    const refused = (config: unknown, says: RegExp) =>
      assert.throws(
        () => parseGatewayConfig(JSON.stringify(config)),
        (e: Error) => {
          assert.ok(e instanceof ConfigError);
          assert.match(e.message, says);
          return true;
        },
      );
    refused({ exa: { apiKey: 'x' } }, /"exa".*catalogue servers/);
    refused({ 'github/a/b': { runCmd: 'x' } }, /GitHub/);
    refused({ 'npm/Bad Name': {} }, /not an npm package name/);
    refused({ 'npm/x': { runCmd: 'y' } }, /unknown field "runCmd"/);
    refused({ mine: { runCmd: '' } }, /runCmd must be/);
    refused({ mine: { runCmd: 'x', envs: { 'A-B': 'c' } } }, /not a variable name/);
    refused({ mine: { runCmd: 'x', initTimeoutSeconds: 0 } }, /initTimeoutSeconds/);
    refused({}, /names no MCP server/);
    assert.throws(() => parseGatewayConfig('{'), /not JSON/);
  });
});

describe('the gateway', () => {
  const upstreams = parseGatewayConfig(
    JSON.stringify({
      echo: { runCmd: `python3 ${echo}` },
      echo2: { runCmd: `python3 ${echo}` },
      crasher: { runCmd: 'echo boom >&2; exit 3' },
      silent: { runCmd: 'sleep 30', initTimeoutSeconds: 1 },
    }),
  ).map((s) => new Upstream(s));
  let http: Server;
  let url: URL;

  before(async () => {
    http = await serveGateway(upstreams, 'the-token', 0);
    url = new URL(`http://127.0.0.1:${(http.address() as AddressInfo).port}/mcp`);
    await Promise.all(upstreams.map((u) => u.start()));
  });
  after(async () => {
    http.close();
    await Promise.all(upstreams.map((u) => u.close()));
  });

  const connect = async (token = 'the-token') => {
    const client = new Client({ name: 'test', version: '1.0.0' });
    await client.connect(
      new StreamableHTTPClientTransport(url, {
        requestInit: { headers: { authorization: `Bearer ${token}` } },
      }),
    );
    return client;
  };

  test('servers that start are served together; clashing names get the server’s prefix', async () => {
    assert.deepEqual(
      upstreams.map((u) => u.state),
      ['ready', 'ready', 'failed', 'failed'],
    );
    assert.match(upstreams[2]?.error ?? '', /boom/);
    assert.match(upstreams[3]?.error ?? '', /did not answer within 1 s/);
    const client = await connect();
    try {
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(names, ['add', 'echo', 'echo2__add', 'echo2__echo']);
      const r = (await client.callTool({ name: 'echo2__add', arguments: { a: 2, b: 40 } })) as CallToolResult;
      assert.deepEqual(r.content, [{ type: 'text', text: '42' }]);
      const none = (await client.callTool({ name: 'nope', arguments: {} })) as CallToolResult;
      assert.equal(none.isError, true);
      assert.match(JSON.stringify(none.content), /crasher \(failed\), silent \(failed\)/);
    } finally {
      await client.close();
    }
  });

  test('a wrong token is refused', async () => {
    await assert.rejects(connect('wrong'), /a valid bearer token is required/);
  });

  test('a server that dies later takes its tools along; the others keep serving, under the same names', async () => {
    await upstreams[0]?.close();
    const client = await connect();
    try {
      const names = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(names, ['echo2__add', 'echo2__echo']);
      const r = (await client.callTool({
        name: 'echo2__echo',
        arguments: { text: 'still here' },
      })) as CallToolResult;
      assert.deepEqual(r.content, [{ type: 'text', text: 'still here' }]);
      const gone = (await client.callTool({ name: 'echo', arguments: { text: 'x' } })) as CallToolResult;
      assert.equal(gone.isError, true);
      assert.match(JSON.stringify(gone.content), /echo \(exited\)/);
    } finally {
      await client.close();
    }
  });
});
