import { spawn } from 'node:child_process';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import type { ServerSpec } from './gateway-config.js';

/** A tool call may run this long without progress before the gateway gives up on it. */
const CALL_TIMEOUT_MS = 10 * 60_000;

export type UpstreamState = 'starting' | 'ready' | 'failed' | 'exited';

export interface UpstreamStatus {
  name: string;
  state: UpstreamState;
  tools: number;
  error?: string;
}

/** Runs `command` to its end within `ms`; rejects with its stderr's tail if it fails. */
function runToEnd(command: string, args: string[], env: NodeJS.ProcessEnv, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      err = (err + d).slice(-4000);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`install ${signal ? `killed (${signal})` : `exited ${code}`}: ${err.trim()}`));
    });
  });
}

/** `p`, or a rejection with `message` once `ms` have passed. */
function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * One MCP server the gateway runs: its process on stdio (the SDK's client transport), its
 * tools as it listed them, and its state. A server that fails to start, never answers
 * within its init timeout, or exits later is marked so; the others are untouched.
 */
export class Upstream {
  state: UpstreamState = 'starting';
  error: string | undefined;
  tools: Tool[] = [];
  private client: Client | undefined;
  private stderrTail = '';

  constructor(readonly spec: ServerSpec) {}

  status(): UpstreamStatus {
    return { name: this.spec.name, state: this.state, tools: this.tools.length, error: this.error };
  }

  /** Installs (pypi), starts and initialises the server, and lists its tools; never rejects. */
  async start(): Promise<void> {
    const { spec } = this;
    const env = { ...(process.env as Record<string, string>), ...spec.env };
    try {
      const deadline = Date.now() + spec.initTimeoutMs;
      if (spec.install) await runToEnd(spec.install.command, spec.install.args, env, spec.initTimeoutMs);
      const transport = new StdioClientTransport({
        command: spec.command,
        args: spec.args,
        env,
        stderr: 'pipe',
      });
      transport.stderr?.on('data', (d: Buffer) => {
        this.stderrTail = (this.stderrTail + d.toString()).slice(-4000);
        process.stderr.write(`[${spec.name}] ${d}`);
      });
      const client = new Client({ name: 'aiva-mcp-gateway', version: '0.1.0' });
      client.onclose = () => {
        if (this.state === 'failed') return;
        this.state = 'exited';
        this.error = `the server exited${this.stderrTail ? `: ${this.stderrTail.trim().split('\n').at(-1)}` : ''}`;
      };
      this.client = client;
      const late = `MCP server "${spec.name}" did not answer within ${spec.initTimeoutMs / 1000} s`;
      await withTimeout(client.connect(transport), Math.max(1, deadline - Date.now()), late);
      const tools: Tool[] = [];
      let cursor: string | undefined;
      do {
        const page = await withTimeout(
          client.listTools({ cursor }),
          Math.max(1, deadline - Date.now()),
          'tools/list',
        );
        tools.push(...page.tools);
        cursor = page.nextCursor;
      } while (cursor);
      this.tools = tools;
      if (this.state === 'starting') this.state = 'ready';
    } catch (e) {
      this.state = 'failed';
      const said = this.stderrTail.trim().split('\n').at(-1);
      this.error = `${(e as Error).message}${said ? ` (it said: ${said})` : ''}`;
      // Its process goes in the background (a server ignoring its stdin's end takes seconds).
      void this.close();
    }
  }

  /** Calls one of its tools by its own name, passing progress through. */
  async call(
    tool: string,
    args: Record<string, unknown> | undefined,
    o: {
      signal: AbortSignal;
      onprogress?: (p: { progress: number; total?: number; message?: string }) => void;
    },
  ): Promise<CallToolResult> {
    if (this.state !== 'ready' || !this.client)
      return {
        isError: true,
        content: [
          {
            type: 'text',
            text: `MCP server "${this.spec.name}" is not running: ${this.error ?? this.state}`,
          },
        ],
      };
    return (await this.client.callTool({ name: tool, arguments: args }, undefined, {
      signal: o.signal,
      onprogress: o.onprogress,
      timeout: CALL_TIMEOUT_MS,
      resetTimeoutOnProgress: true,
    })) as CallToolResult;
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.close().catch(() => {});
  }
}

/**
 * The gateway's tools by the names it serves them under: each server's own, unless a server
 * earlier in the config has it; then `<server>__<tool>`. Names are given over every server
 * that listed tools, running or not, so a server that dies takes its tools along without
 * another's taking their names.
 */
export function toolTable(upstreams: Upstream[]): Map<string, { upstream: Upstream; tool: Tool }> {
  const table = new Map<string, { upstream: Upstream; tool: Tool }>();
  const taken = new Set<string>();
  for (const upstream of upstreams) {
    for (const tool of upstream.tools) {
      const name = taken.has(tool.name)
        ? `${upstream.spec.name.replace(/[^A-Za-z0-9_-]/g, '_')}__${tool.name}`
        : tool.name;
      taken.add(name);
      if (upstream.state === 'ready') table.set(name, { upstream, tool });
    }
  }
  return table;
}
