// `aiva mcp connect <name|sandbox-id>`: the built CLI, spawned by the official MCP SDK's
// client as a stdio server (StdioClientTransport), serves the MCP server a sandbox runs
// behind its gateway (E2B's `mcp` option, the mcp-gateway template, against a real `aiva
// up` with containers). The sandbox runs one custom stdio server, configured as
// `mcpGatewayConfigFor` gives it (what `aiva init --mcp` uses); and an environment made
// with `aiva init --mcp`, whose service is that server.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkHostLeaks } from '@aiva/node/testkit';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { type CallToolResult, ErrorCode, McpError } from '@modelcontextprotocol/sdk/types.js';
import { Sandbox } from 'e2b';
import { shellQuote } from '../src/command-line.js';
import { MCP_GATEWAY_TEMPLATE, mcpGatewayConfigFor } from '../src/mcp-gateway-config.js';
import { type RunningUp, startUp } from './helpers/aiva-up.js';
import { cliPath, explain, removeHome, runCli, tempHome } from './helpers/run-cli.js';
import { templateBuiltForFile } from './helpers/template-built.js';

/** A stdio MCP server in Python's standard library (tools echo and add): the gateway's own fixture. */
const ECHO_SERVER = fileURLToPath(
  new URL('../../../mcp-gateway/test/fixtures/echo-mcp-server.py', import.meta.url),
);

let home = '';
let up: RunningUp | undefined;
let sbx: Sandbox;
const name = `mcp-${randomBytes(3).toString('hex')}`;
const aiva = (...args: string[]) => runCli(args, { env: { AIVA_HOME: home } });
const textOf = (r: CallToolResult) => (r.content[0]?.type === 'text' ? r.content[0].text : '');

/** An MCP client that spawns `aiva mcp connect <target>` as its stdio server. */
async function connectedClient(target: string): Promise<{ client: Client; stderr: () => string }> {
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [cliPath, 'mcp', 'connect', target],
    env: { ...(process.env as Record<string, string>), AIVA_HOME: home },
    stderr: 'pipe',
  });
  let stderr = '';
  transport.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const client = new Client({ name: 'aiva-cli-test', version: '1.0.0' });
  await client.connect(transport);
  return { client, stderr: () => stderr };
}

templateBuiltForFile(MCP_GATEWAY_TEMPLATE);

describe('aiva mcp connect', () => {
  before(async () => {
    home = await tempHome();
    up = await startUp(home, ['--log-level', 'warn', '--runtime', 'container']);
    const credentials = JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')) as {
      apiUrl: string;
      apiKey: string;
    };
    sbx = await Sandbox.create({
      apiUrl: credentials.apiUrl,
      apiKey: credentials.apiKey,
      sandboxUrl: credentials.apiUrl,
      timeoutMs: 900_000,
      metadata: { 'aiva.environment': name },
      // The program rides in an environment variable of its command.
      mcp: mcpGatewayConfigFor('python3 -c "$ECHO_SERVER"', {
        envs: { ECHO_SERVER: await readFile(ECHO_SERVER, 'utf8') },
      }) as never,
    });
  });
  after(async () => {
    await sbx?.kill().catch(() => undefined);
    if (up) assert.equal(await up.stop(), 0, up.stderr());
    if (home) await removeHome(home);
  });

  it("serves the sandbox's MCP server on stdio to a host that spawns it, by sandbox id", async () => {
    const { client, stderr } = await connectedClient(sbx.sandboxId);
    try {
      assert.equal(client.getServerVersion()?.name, 'aiva-mcp-gateway', stderr());
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      assert.deepEqual(tools, ['add', 'echo']);
      const echoed = (await client.callTool({
        name: 'echo',
        arguments: { text: 'héllo ✓' },
      })) as CallToolResult;
      assert.equal(textOf(echoed), 'héllo ✓');
      // Requests in flight together are each answered.
      const sums = await Promise.all(
        [1, 2, 3].map(async (n) =>
          textOf((await client.callTool({ name: 'add', arguments: { a: n, b: 40 } })) as CallToolResult),
        ),
      );
      assert.deepEqual(sums, ['41', '42', '43']);
    } finally {
      await client.close();
    }
  });

  it('finds the environment by its name', async () => {
    const { client } = await connectedClient(name);
    try {
      const sum = (await client.callTool({ name: 'add', arguments: { a: 2, b: 3 } })) as CallToolResult;
      assert.equal(textOf(sum), '5');
    } finally {
      await client.close();
    }
  });

  it('refuses what it cannot serve, with a clear error', async () => {
    const unknown = await aiva('mcp', 'connect', 'no-such-env');
    // (a name that could be a sandbox id is asked for as one, too)
    const unknownId = await aiva('mcp', 'connect', 'nosuchsandbox');
    assert.equal(unknownId.code, 1, explain(unknownId));
    assert.equal(
      unknownId.stderr,
      'aiva: no environment or sandbox nosuchsandbox (aiva status lists environments)\n',
    );
    assert.equal(unknown.code, 1, explain(unknown));
    assert.equal(
      unknown.stderr,
      'aiva: no environment or sandbox no-such-env (aiva status lists environments)\n',
    );

    const plain = await Sandbox.create('base', {
      apiUrl: up?.url,
      apiKey: JSON.parse(await readFile(join(home, 'credentials.json'), 'utf8')).apiKey as string,
      sandboxUrl: up?.url,
      timeoutMs: 300_000,
    });
    try {
      const r = await aiva('mcp', 'connect', plain.sandboxId);
      assert.equal(r.code, 1, explain(r));
      assert.match(r.stderr, new RegExp(`^aiva: sandbox ${plain.sandboxId} runs no MCP gateway`));
    } finally {
      await plain.kill();
    }
  });

  it('aiva init --mcp: an environment whose service is the MCP server, served by name after start and after a stop and start', async () => {
    const env = `mcpenv-${randomBytes(3).toString('hex')}`;
    const script = await readFile(ECHO_SERVER, 'utf8');
    const empty = await aiva('init', `${env}-x`, '--mcp', ' ');
    assert.equal(empty.code, 1, explain(empty));
    assert.match(empty.stderr, /the MCP server command is empty/);
    assert.match((await aiva('status', `${env}-x`)).stderr, /does not exist/, 'nothing made');

    const init = await aiva('init', env, '--mcp', `python3 -c ${shellQuote(script)}`);
    assert.equal(init.code, 0, explain(init));
    assert.match(init.stdout, /template mcp-gateway, an MCP server as its service/);
    try {
      /** Calls `add` through `aiva mcp connect <env>`, once the service's gateway answers. */
      const added = async (a: number, b: number): Promise<string> => {
        const deadline = Date.now() + 60_000;
        for (;;) {
          const { client, stderr } = await connectedClient(env).catch((e: Error) => ({
            client: undefined,
            stderr: () => e.message,
          }));
          try {
            if (client)
              return textOf((await client.callTool({ name: 'add', arguments: { a, b } })) as CallToolResult);
          } catch (e) {
            if (Date.now() > deadline) throw e;
          } finally {
            await client?.close();
          }
          if (Date.now() > deadline) assert.fail(`the environment's gateway never answered: ${stderr()}`);
          await new Promise((r) => setTimeout(r, 500));
        }
      };
      const started = await aiva('start', env);
      assert.equal(started.code, 0, explain(started));
      assert.equal(await added(20, 22), '42');
      for (const step of [
        ['stop', env],
        ['start', env],
      ]) {
        const r = await aiva(...step);
        assert.equal(r.code, 0, explain(r));
      }
      assert.equal(await added(1, 1), '2', 'the service is back after a stop and start');
    } finally {
      const rm = await aiva('rm', env, '--force');
      assert.equal(rm.code, 0, explain(rm));
    }
  });

  // Last: it stops the sandbox's gateway.
  it('a gateway gone mid-session: the host gets an error for its request, not silence', async () => {
    const { client } = await connectedClient(sbx.sandboxId);
    try {
      assert.equal(
        textOf((await client.callTool({ name: 'echo', arguments: { text: 'up' } })) as CallToolResult),
        'up',
      );
      await sbx.commands.run('kill -TERM -- -"$(cat /run/mcp-gateway.pid)"', { user: 'root' });
      // The signal reaches the gateway's whole group: either the bridge finds no gateway
      // (its own error), or the gateway outlives its server for an instant and answers that
      // the server's connection closed. Both are answers; a timeout (silence) is not.
      await assert.rejects(
        client.callTool({ name: 'echo', arguments: { text: 'down' } }, undefined, { timeout: 30_000 }),
        (e: unknown) => {
          assert.ok(e instanceof McpError, String(e));
          assert.notEqual(e.code, ErrorCode.RequestTimeout, 'the host heard nothing');
          assert.match(e.message, /the sandbox's MCP gateway: |Connection closed/);
          return true;
        },
      );
    } finally {
      await client.close();
    }
  });
});

checkHostLeaks({ betweenNodes: true });
