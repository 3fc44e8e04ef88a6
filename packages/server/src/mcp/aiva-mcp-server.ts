import { Sandbox as CodeInterpreter } from '@e2b/code-interpreter';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { CommandExitError, Sandbox } from 'e2b';
import { z } from 'zod';

/** The aiva API the tools call, and the key they call it with: the MCP client's own. */
export interface McpApiTarget {
  apiUrl: string;
  apiKey: string;
  /** The server's sandbox domain, when it routes sandbox ports by host name. */
  domain?: string;
}

const MAX_TIMEOUT_S = 24 * 3600;
const sandboxId = z
  .string()
  .min(1)
  .max(100)
  .describe('the sandbox id, as create_sandbox or list_sandboxes gave it');
const path = z
  .string()
  .min(1)
  .max(4096)
  .describe('an absolute path inside the sandbox, or one relative to its user’s home');

const text = (value: unknown, isError = false): CallToolResult => ({
  content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) }],
  ...(isError ? { isError } : {}),
});

/**
 * aiva as an MCP server (built on the official MCP TypeScript SDK): tools that create,
 * list and kill sandboxes, run commands and code (their output streamed as progress),
 * read, write and list files, and expose a port; and each sandbox's console log as a
 * resource. Every tool is a call on aiva's public API with the client's key (through the
 * `e2b` SDK, as any script would make it), so a tool can do what the key may and no more.
 * `aiva mcp` serves it on stdio; the server at `/mcp` over Streamable HTTP.
 */
export function createAivaMcpServer(target: McpApiTarget, version: string): McpServer {
  const server = new McpServer({ name: 'aiva', version });
  const opts = { apiKey: target.apiKey, apiUrl: target.apiUrl, sandboxUrl: target.apiUrl };
  const connect = (id: string) => Sandbox.connect(id, opts);

  server.registerTool(
    'create_sandbox',
    {
      title: 'Create a sandbox',
      description:
        'Starts an isolated Linux sandbox (a microVM or a hardened container) from a template, and returns its id.',
      inputSchema: {
        template: z
          .string()
          .min(1)
          .max(200)
          .default('base')
          .describe('a template name or id (default: base)'),
        timeoutSeconds: z
          .number()
          .int()
          .min(1)
          .max(MAX_TIMEOUT_S)
          .optional()
          .describe('how long it lives before it is killed (default: the server’s)'),
        envs: z.record(z.string(), z.string()).optional().describe('environment variables of its processes'),
        metadata: z.record(z.string(), z.string()).optional().describe('labels to find it by'),
      },
    },
    async ({ template, timeoutSeconds, envs, metadata }) => {
      const sbx = await Sandbox.create(template, {
        ...opts,
        timeoutMs: timeoutSeconds === undefined ? undefined : timeoutSeconds * 1000,
        envs,
        metadata,
      });
      return text({ sandboxId: sbx.sandboxId, template });
    },
  );

  server.registerTool(
    'list_sandboxes',
    {
      title: 'List sandboxes',
      description: 'The running and paused sandboxes this key’s team has.',
      annotations: { readOnlyHint: true },
    },
    async () => {
      const paginator = Sandbox.list(opts);
      const items = [];
      while (paginator.hasNext) items.push(...(await paginator.nextItems()));
      return text(
        items.map((s) => ({
          sandboxId: s.sandboxId,
          template: s.name ?? s.templateId,
          state: s.state,
          startedAt: s.startedAt,
          endAt: s.endAt,
          metadata: s.metadata,
        })),
      );
    },
  );

  server.registerTool(
    'kill_sandbox',
    {
      title: 'Kill a sandbox',
      description: 'Ends a sandbox and everything in it.',
      inputSchema: { sandboxId },
      annotations: { destructiveHint: true },
    },
    async ({ sandboxId: id }) => {
      const killed = await Sandbox.kill(id, opts);
      return killed ? text(`killed ${id}`) : text(`sandbox ${id} not found`, true);
    },
  );

  server.registerTool(
    'run_command',
    {
      title: 'Run a command',
      description:
        'Runs a shell command in a sandbox and returns its exit code, stdout and stderr. Output is streamed as progress notifications when the client asks for progress.',
      inputSchema: {
        sandboxId,
        command: z.string().min(1).max(100_000).describe('run by /bin/bash -l -c'),
        cwd: z.string().max(4096).optional(),
        envs: z.record(z.string(), z.string()).optional(),
        timeoutSeconds: z.number().int().min(1).max(MAX_TIMEOUT_S).default(60),
      },
    },
    async ({ sandboxId: id, command, cwd, envs, timeoutSeconds }, extra) => {
      const sbx = await connect(id);
      const token = extra._meta?.progressToken;
      let chunks = 0;
      const progress = (stream: 'stdout' | 'stderr') => (data: string) => {
        if (token === undefined) return;
        void extra
          .sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: ++chunks, message: `${stream}: ${data}` },
          })
          .catch(() => {});
      };
      try {
        const r = await sbx.commands.run(command, {
          cwd,
          envs,
          timeoutMs: timeoutSeconds * 1000,
          onStdout: progress('stdout'),
          onStderr: progress('stderr'),
        });
        return text({ exitCode: r.exitCode, stdout: r.stdout, stderr: r.stderr });
      } catch (e) {
        if (e instanceof CommandExitError)
          return text({ exitCode: e.exitCode, stdout: e.stdout, stderr: e.stderr, error: e.error }, true);
        throw e;
      }
    },
  );

  server.registerTool(
    'run_code',
    {
      title: 'Run code',
      description:
        'Runs code in a Jupyter kernel of a sandbox made from the code-interpreter template (create_sandbox with template "code-interpreter-v1"); state is kept between calls. Returns stdout, stderr, the results (charts as images) and the error, if any.',
      inputSchema: {
        sandboxId,
        code: z.string().min(1).max(1_000_000),
        language: z
          .enum(['python', 'javascript', 'typescript', 'r', 'java', 'bash'])
          .default('python')
          .describe('the kernel (default python)'),
        timeoutSeconds: z.number().int().min(1).max(MAX_TIMEOUT_S).default(300),
      },
    },
    async ({ sandboxId: id, code, language, timeoutSeconds }, extra) => {
      const sbx = await CodeInterpreter.connect(id, opts);
      const token = extra._meta?.progressToken;
      let chunks = 0;
      const progress = (stream: string) => (m: { line: string }) => {
        if (token === undefined) return;
        void extra
          .sendNotification({
            method: 'notifications/progress',
            params: { progressToken: token, progress: ++chunks, message: `${stream}: ${m.line}` },
          })
          .catch(() => {});
      };
      const run = await sbx.runCode(code, {
        language,
        timeoutMs: timeoutSeconds * 1000,
        onStdout: progress('stdout'),
        onStderr: progress('stderr'),
      });
      const images = run.results.flatMap((r) =>
        r.png ? [{ type: 'image' as const, data: r.png, mimeType: 'image/png' }] : [],
      );
      const summary = {
        stdout: run.logs.stdout.join(''),
        stderr: run.logs.stderr.join(''),
        results: run.results.map((r) => r.text).filter((t) => t !== undefined),
        ...(run.error ? { error: { name: run.error.name, value: run.error.value } } : {}),
      };
      return {
        content: [{ type: 'text', text: JSON.stringify(summary, null, 2) }, ...images],
        ...(run.error ? { isError: true } : {}),
      };
    },
  );

  server.registerTool(
    'read_file',
    {
      title: 'Read a file',
      description: 'A file of a sandbox, as UTF-8 text.',
      inputSchema: { sandboxId, path },
      annotations: { readOnlyHint: true },
    },
    async ({ sandboxId: id, path: p }) => text(await (await connect(id)).files.read(p)),
  );

  server.registerTool(
    'write_file',
    {
      title: 'Write a file',
      description: 'Writes text to a file of a sandbox (made, with its directories, if it does not exist).',
      inputSchema: { sandboxId, path, content: z.string().max(50 * 1024 * 1024) },
    },
    async ({ sandboxId: id, path: p, content }) => {
      const info = await (await connect(id)).files.write(p, content);
      return text(`wrote ${Buffer.byteLength(content)} bytes to ${info.path}`);
    },
  );

  server.registerTool(
    'list_files',
    {
      title: 'List a directory',
      description: 'The entries of a directory of a sandbox: name, type, size.',
      inputSchema: { sandboxId, path, depth: z.number().int().min(1).max(10).default(1) },
      annotations: { readOnlyHint: true },
    },
    async ({ sandboxId: id, path: p, depth }) => {
      const entries = await (await connect(id)).files.list(p, { depth });
      return text(entries.map((e) => ({ name: e.name, path: e.path, type: e.type, size: e.size })));
    },
  );

  server.registerTool(
    'expose_port',
    {
      title: 'Expose a port',
      description:
        'How to reach a port a process in the sandbox listens on: its host name when the server routes by name, else the server’s URL with the headers that name the sandbox and port.',
      inputSchema: { sandboxId, port: z.number().int().min(1).max(65535) },
      annotations: { readOnlyHint: true },
    },
    async ({ sandboxId: id, port }) => {
      const sbx = await connect(id);
      return text({
        ...(target.domain ? { url: `https://${sbx.getHost(port)}` } : {}),
        proxy: {
          url: target.apiUrl,
          headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': String(port) },
        },
      });
    },
  );

  server.registerResource(
    'sandbox-logs',
    new ResourceTemplate('aiva://sandboxes/{sandboxId}/logs', {
      list: async () => {
        const paginator = Sandbox.list(opts);
        const items = [];
        while (paginator.hasNext) items.push(...(await paginator.nextItems()));
        return {
          resources: items.map((s) => ({
            uri: `aiva://sandboxes/${s.sandboxId}/logs`,
            name: `${s.sandboxId} logs`,
            mimeType: 'text/plain',
          })),
        };
      },
    }),
    {
      title: 'Sandbox console log',
      description: 'What a sandbox printed to its console',
      mimeType: 'text/plain',
    },
    async (uri, { sandboxId: id }) => {
      const res = await fetch(`${target.apiUrl}/v2/sandboxes/${encodeURIComponent(String(id))}/logs`, {
        headers: { 'x-api-key': target.apiKey },
      });
      const body = (await res.json()) as {
        logs?: { timestamp: string; level: string; message: string }[];
        message?: string;
      };
      if (!res.ok) throw new Error(body.message ?? `HTTP ${res.status}`);
      const lines = (body.logs ?? []).map((l) => `${l.timestamp} ${l.level} ${l.message}`).join('\n');
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text: lines }] };
    },
  );

  return server;
}
