// MCP servers inside sandboxes (issue 20): E2B's `mcp` option of `Sandbox.create`, with the
// official e2b SDK against a real `aiva up`. The SDK starts the `mcp-gateway` template and
// runs `mcp-gateway --config …` in it; the gateway runs `@modelcontextprotocol/server-
// filesystem` from npm (served, with its whole dependency closure, by a registry in this
// file's test "internet") and a custom stdio server, and serves their tools together over
// Streamable HTTP on port 50005 with the sandbox's MCP token. The official MCP SDK's client
// reaches it through aiva's proxy. A server that crashes or never answers leaves the
// others served; a config the gateway cannot run fails the create and leaves no sandbox.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestInternet } from '@aiva/node/testkit';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Sandbox, SandboxError } from 'e2b';
import { type AivaUp, aivaUp, removeHome, templateBuiltForFile, useServer } from './helpers/aiva-up.js';
import { checkHostLeaks } from './helpers/host-leaks.js';
import { makeNpmMirror } from './helpers/npm-mirror.js';

const [NPM] = TestInternet.WEB;
const PORT = 8080;
const MIRROR = `http://npm.aiva.test:${PORT}`;
const FILESYSTEM = '@modelcontextprotocol/server-filesystem';
/** A stdio MCP server in Python's standard library (the gateway's own test fixture). */
const ECHO_SERVER = fileURLToPath(
  new URL('../../../mcp-gateway/test/fixtures/echo-mcp-server.py', import.meta.url),
);
const LONG_MS = 300_000;

let up: AivaUp;
let inet: TestInternet;
let work: string;
let echoSource: string;

templateBuiltForFile('mcp-gateway');
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'aiva-mcp-gateway-'));
  const root = dirname(fileURLToPath(import.meta.resolve(`${FILESYSTEM}/package.json`)));
  await makeNpmMirror(join(work, 'npm'), MIRROR, root);
  echoSource = await readFile(ECHO_SERVER, 'utf8');
  inet = await TestInternet.start({ 'npm.aiva.test': { A: [NPM as string] } });
  await inet.serveDirectory(join(work, 'npm'), NPM as string, PORT);
  up = await aivaUp(['--runtime', 'container', '--dns', inet.dnsUpstream]);
  useServer(up);
});
after(async () => {
  const code = await up?.stop();
  await inet?.stop();
  await rm(work, { recursive: true, force: true });
  assert.equal(code, 0, up?.output());
  await removeHome(up.home);
});
checkHostLeaks();

/** The custom server: the Python program rides in an environment variable of its command. */
const echoServer = (extra: Record<string, unknown> = {}) => ({
  runCmd: 'python3 -c "$ECHO_SERVER"',
  envs: { ECHO_SERVER: echoSource },
  ...extra,
});

/** An MCP client of the sandbox's gateway, through aiva's proxy (E2B's sandbox headers). */
async function gatewayClient(sbx: Sandbox, token: string): Promise<Client> {
  const client = new Client({ name: 'aiva-e2e', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${up.url}/mcp`), {
      requestInit: {
        headers: {
          'e2b-sandbox-id': sbx.sandboxId,
          'e2b-sandbox-port': '50005',
          authorization: `Bearer ${token}`,
        },
      },
    }),
  );
  return client;
}

const textOf = (r: CallToolResult) => (r.content[0]?.type === 'text' ? r.content[0].text : '');

describe('MCP servers in a sandbox, behind its gateway', () => {
  test('an npm server and a custom one, served together with the sandbox’s token', async () => {
    const sbx = await Sandbox.create({
      timeoutMs: LONG_MS,
      mcp: {
        [`npm/${FILESYSTEM}`]: { args: ['/home/user'], envs: { NPM_CONFIG_REGISTRY: MIRROR } },
        echo: echoServer(),
      } as never,
    });
    try {
      assert.match(sbx.getMcpUrl(), new RegExp(`^https://50005-${sbx.sandboxId}\\.`));
      const token = await sbx.getMcpToken();
      assert.ok(token);
      // The token the SDK made is the one the gateway keeps (what a later connect reads).
      assert.equal(await (await Sandbox.connect(sbx.sandboxId)).getMcpToken(), token);

      const client = await gatewayClient(sbx, token);
      try {
        const names = (await client.listTools()).tools.map((t) => t.name);
        for (const name of ['echo', 'add', 'read_text_file', 'write_file', 'list_directory'])
          assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
        const echoed = (await client.callTool({ name: 'echo', arguments: { text: 'hi' } })) as CallToolResult;
        assert.equal(textOf(echoed), 'hi');
        const wrote = (await client.callTool({
          name: 'write_file',
          arguments: { path: '/home/user/from-mcp.txt', content: 'written through the gateway' },
        })) as CallToolResult;
        assert.ok(!wrote.isError, JSON.stringify(wrote));
        assert.equal(await sbx.files.read('/home/user/from-mcp.txt'), 'written through the gateway');
        const outside = (await client.callTool({
          name: 'read_text_file',
          arguments: { path: '/etc/mcp-gateway/.token' },
        })) as CallToolResult;
        assert.equal(outside.isError, true, 'the filesystem server keeps to the directory it was given');
      } finally {
        await client.close();
      }
      await assert.rejects(gatewayClient(sbx, 'not-the-token'), /bearer token/);
    } finally {
      await sbx.kill();
    }
  });

  test('a server that crashes or never answers leaves the others served', async () => {
    const sbx = await Sandbox.create({
      timeoutMs: LONG_MS,
      mcp: {
        crasher: { runCmd: 'echo boom >&2; exit 3' },
        silent: { runCmd: 'sleep 600', initTimeoutSeconds: 2 },
        echo: echoServer(),
      } as never,
    });
    try {
      const client = await gatewayClient(sbx, (await sbx.getMcpToken()) ?? '');
      try {
        assert.deepEqual((await client.listTools()).tools.map((t) => t.name).sort(), ['add', 'echo']);
        const sum = (await client.callTool({ name: 'add', arguments: { a: 40, b: 2 } })) as CallToolResult;
        assert.equal(textOf(sum), '42');
      } finally {
        await client.close();
      }
      const log = await sbx.files.read('/var/log/mcp-gateway.log', { user: 'root' });
      assert.match(log, /"name":"crasher","state":"failed".*boom/);
      assert.match(log, /"name":"silent","state":"failed".*did not answer within 2 s/);
    } finally {
      await sbx.kill();
    }
  });

  test('a config the gateway cannot run fails the create, naming the server, and leaves no sandbox', async () => {
    const before = (await Sandbox.list().nextItems()).length;
    await assert.rejects(
      Sandbox.create({ timeoutMs: LONG_MS, mcp: { exa: { apiKey: 'x' } } as never }),
      (e: Error) => {
        assert.ok(e instanceof SandboxError, String(e));
        assert.match(e.message, /Failed to start MCP gateway: .*"exa".*catalogue servers/);
        return true;
      },
    );
    await assert.rejects(
      Sandbox.create({ timeoutMs: LONG_MS, mcp: { crasher: { runCmd: 'exit 3' } } as never }),
      /no MCP server started/,
    );
    assert.equal((await Sandbox.list().nextItems()).length, before);
  });
});
