// aiva as an MCP server (issue 20), driven by the official MCP TypeScript SDK's client:
// `aiva mcp` spawned on stdio as agent hosts spawn it, and `/mcp` on a real `aiva up` over
// Streamable HTTP with the key as a bearer token. Tools create a sandbox, run a command
// whose output arrives as progress, write, read and list files, reach a port, read the
// console log as a resource and kill the sandbox; code runs in a code-interpreter
// sandbox's kernel, keeping its state, with charts as images; bad input and keys are refused.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { aivaUpForFile, templateBuiltForFile } from './helpers/aiva-up.js';

const server = aivaUpForFile();
templateBuiltForFile('code-interpreter-v1');
const cli = fileURLToPath(import.meta.resolve('@aiva/cli/aiva'));

const TOOLS = [
  'create_sandbox',
  'expose_port',
  'kill_sandbox',
  'list_files',
  'list_sandboxes',
  'read_file',
  'run_code',
  'run_command',
  'write_file',
];

/** The text of a tool's result; fails the test if the tool said it failed, unless `failed`. */
async function call(client: Client, name: string, args: Record<string, unknown>, failed = false) {
  const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
  assert.equal(Boolean(r.isError), failed, JSON.stringify(r));
  const [first] = r.content;
  assert.equal(first?.type, 'text');
  return first?.type === 'text' ? first.text : '';
}

async function stdioClient(): Promise<Client> {
  const client = new Client({ name: 'aiva-e2e', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: [cli, 'mcp'],
      env: {
        ...(process.env as Record<string, string>),
        E2B_API_URL: server.up.url,
        E2B_API_KEY: server.up.apiKey,
      },
      stderr: 'pipe',
    }),
  );
  return client;
}

async function httpClient(key = server.up.apiKey): Promise<Client> {
  const client = new Client({ name: 'aiva-e2e', version: '1.0.0' });
  await client.connect(
    new StreamableHTTPClientTransport(new URL(`${server.up.url}/mcp`), {
      requestInit: { headers: { authorization: `Bearer ${key}` } },
    }),
  );
  return client;
}

/** One sandbox's life through the tools, as an agent would drive it. */
async function sandboxThroughTools(client: Client): Promise<void> {
  const tools = (await client.listTools()).tools.map((t) => t.name).sort();
  assert.deepEqual(tools, TOOLS);
  const { sandboxId } = JSON.parse(await call(client, 'create_sandbox', { timeoutSeconds: 300 })) as {
    sandboxId: string;
  };
  try {
    const listed = JSON.parse(await call(client, 'list_sandboxes', {})) as { sandboxId: string }[];
    assert.ok(listed.some((s) => s.sandboxId === sandboxId));

    // Output streams as progress while the command runs; a failing exit is a tool error.
    const progress: string[] = [];
    const r = (await client.callTool(
      {
        name: 'run_command',
        arguments: { sandboxId, command: 'echo out-1; sleep 0.3; echo err-1 >&2; exit 3' },
      },
      undefined,
      { onprogress: (p) => progress.push(p.message ?? '') },
    )) as CallToolResult;
    assert.equal(r.isError, true);
    const ran = JSON.parse(r.content[0]?.type === 'text' ? r.content[0].text : '{}');
    assert.equal(ran.exitCode, 3);
    assert.equal(ran.stdout, 'out-1\n');
    assert.equal(ran.stderr, 'err-1\n');
    assert.ok(progress.includes('stdout: out-1\n'), JSON.stringify(progress));
    assert.ok(progress.includes('stderr: err-1\n'), JSON.stringify(progress));

    await call(client, 'write_file', { sandboxId, path: '/home/user/www/hello.txt', content: 'hi from mcp' });
    assert.equal(
      await call(client, 'read_file', { sandboxId, path: '/home/user/www/hello.txt' }),
      'hi from mcp',
    );
    const entries = JSON.parse(await call(client, 'list_files', { sandboxId, path: '/home/user/www' }));
    assert.deepEqual(
      entries.map((e: { name: string; type: string }) => [e.name, e.type]),
      [['hello.txt', 'file']],
    );
    await call(client, 'read_file', { sandboxId, path: '/home/user/nope' }, true);

    // A port: a server in the sandbox, reached the way expose_port says.
    await call(client, 'run_command', {
      sandboxId,
      command: 'cd /home/user/www && (python3 -m http.server 8000 >/dev/null 2>&1 &) ; sleep 1',
    });
    const exposed = JSON.parse(await call(client, 'expose_port', { sandboxId, port: 8000 })) as {
      proxy: { url: string; headers: Record<string, string> };
    };
    let body = '';
    for (let i = 0; i < 50 && body !== 'hi from mcp'; i++) {
      const res = await fetch(`${exposed.proxy.url}/hello.txt`, { headers: exposed.proxy.headers });
      body = res.ok ? await res.text() : '';
      if (body !== 'hi from mcp') await new Promise((res) => setTimeout(res, 200));
    }
    assert.equal(body, 'hi from mcp');

    // The console log as a resource, listed among the sandboxes'.
    const uri = `aiva://sandboxes/${sandboxId}/logs`;
    assert.ok((await client.listResources()).resources.some((x) => x.uri === uri));
    const log = await client.readResource({ uri });
    const [content] = log.contents;
    assert.equal(content?.uri, uri);
    assert.ok(content && 'text' in content);
    assert.match(content.text, /envd .* listening on /);
  } finally {
    assert.match(await call(client, 'kill_sandbox', { sandboxId }), /^killed /);
  }
  assert.match(await call(client, 'kill_sandbox', { sandboxId }, true), /not found/);
  const after = JSON.parse(await call(client, 'list_sandboxes', {})) as { sandboxId: string }[];
  assert.ok(!after.some((s) => s.sandboxId === sandboxId));
}

describe('aiva as an MCP server', () => {
  test('`aiva mcp` on stdio: a sandbox through the tools', async () => {
    const client = await stdioClient();
    try {
      await sandboxThroughTools(client);
    } finally {
      await client.close();
    }
  });

  test('/mcp over Streamable HTTP: a sandbox through the tools', async () => {
    const client = await httpClient();
    try {
      await sandboxThroughTools(client);
    } finally {
      await client.close();
    }
  });

  test('run_code: a kernel that keeps its state, output as progress, charts as images, errors', async () => {
    const client = await httpClient();
    const { sandboxId } = JSON.parse(
      await call(client, 'create_sandbox', { template: 'code-interpreter-v1', timeoutSeconds: 300 }),
    ) as { sandboxId: string };
    try {
      const progress: string[] = [];
      const first = (await client.callTool(
        { name: 'run_code', arguments: { sandboxId, code: 'x = 6 * 7\nprint("side")\nx' } },
        undefined,
        { onprogress: (p) => progress.push(p.message ?? '') },
      )) as CallToolResult;
      assert.ok(!first.isError, JSON.stringify(first));
      const ran = JSON.parse(first.content[0]?.type === 'text' ? first.content[0].text : '{}');
      assert.deepEqual(ran.results, ['42']);
      assert.equal(ran.stdout, 'side\n');
      assert.ok(progress.includes('stdout: side\n'), JSON.stringify(progress));
      assert.deepEqual(JSON.parse(await call(client, 'run_code', { sandboxId, code: 'x + 1' })).results, [
        '43',
      ]);

      const chart = (await client.callTool({
        name: 'run_code',
        arguments: {
          sandboxId,
          code: 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()',
        },
      })) as CallToolResult;
      const image = chart.content.find((c) => c.type === 'image');
      assert.ok(image?.type === 'image' && image.mimeType === 'image/png', JSON.stringify(chart.content));
      assert.equal(Buffer.from(image.data, 'base64').subarray(1, 4).toString(), 'PNG');

      const failed = JSON.parse(await call(client, 'run_code', { sandboxId, code: '1 / 0' }, true));
      assert.equal(failed.error.name, 'ZeroDivisionError');
    } finally {
      await call(client, 'kill_sandbox', { sandboxId });
      await client.close();
    }
  });

  test('bad arguments are refused naming the field, and make nothing', async () => {
    const client = await httpClient();
    try {
      const before = await call(client, 'list_sandboxes', {});
      const r = (await client.callTool({
        name: 'create_sandbox',
        arguments: { timeoutSeconds: -5 },
      })) as CallToolResult;
      assert.equal(r.isError, true);
      assert.match(JSON.stringify(r.content), /timeoutSeconds/);
      const port = (await client.callTool({
        name: 'expose_port',
        arguments: { sandboxId: 'x', port: 70000 },
      })) as CallToolResult;
      assert.equal(port.isError, true);
      assert.match(
        await call(client, 'create_sandbox', { template: 'no-such-template' }, true),
        /no-such-template/,
      );
      assert.equal(await call(client, 'list_sandboxes', {}), before);
    } finally {
      await client.close();
    }
  });

  test('/mcp refuses a wrong key (401) and a read-only key (403); GET is 405', async () => {
    await assert.rejects(httpClient('e2b_0000000000000000000000000000000000000000'), /401|invalid API key/);
    const made = await fetch(`${server.up.url}/v1/keys`, {
      method: 'POST',
      headers: { 'x-api-key': server.up.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'viewer', scopes: ['read-only'] }),
    });
    assert.equal(made.status, 201);
    const { key } = (await made.json()) as { key: string };
    await assert.rejects(httpClient(key), /403|scope/);
    const get = await fetch(`${server.up.url}/mcp`, { headers: { 'x-api-key': server.up.apiKey } });
    assert.equal(get.status, 405);
  });
});
