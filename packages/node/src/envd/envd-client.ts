import { ENVD_ACCESS_TOKEN_HEADER, ENVD_PORT, process as pp } from '@aiva/protocol';
import { type CallOptions, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';

export interface ExecOptions {
  /** The sandbox user to run as (envd's default user if not given). */
  user?: string;
  cwd?: string;
  envs?: Record<string, string>;
  /** envd's access token, if the sandbox has one. */
  accessToken?: string;
  /** Kill the command after this long. */
  timeoutMs?: number;
  /** envd's port, if not the usual one (a forwarded port). */
  port?: number;
  onStdout?: (chunk: Uint8Array) => void;
  onStderr?: (chunk: Uint8Array) => void;
}

export interface ExecResult {
  exitCode: number;
  /** envd's status text: "exit status 1", "signal: killed" … */
  status: string;
  stdout: string;
  stderr: string;
}

/** The headers envd authenticates a call by. */
export function envdHeaders(options: { user?: string; accessToken?: string }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (options.user) headers.authorization = `Basic ${Buffer.from(`${options.user}:`).toString('base64')}`;
  if (options.accessToken) headers[ENVD_ACCESS_TOKEN_HEADER] = options.accessToken;
  return headers;
}

/**
 * Runs `command` with bash in the sandbox through envd's process service and waits for
 * it to end: what `aiva sandbox exec` and the node's own checks use.
 */
export async function execInSandbox(
  address: string,
  command: string,
  options: ExecOptions = {},
): Promise<ExecResult> {
  const transport = createConnectTransport({
    baseUrl: `http://${address}:${options.port ?? ENVD_PORT}`,
    httpVersion: '1.1',
    useBinaryFormat: true,
  });
  const client = createClient(pp.Process, transport);
  const call: CallOptions = { headers: envdHeaders(options), timeoutMs: options.timeoutMs };
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stream = client.start(
    {
      process: { cmd: '/bin/bash', args: ['-l', '-c', command], envs: options.envs ?? {}, cwd: options.cwd },
      stdin: false,
    },
    call,
  );
  for await (const res of stream) {
    const ev = res.event?.event;
    if (ev?.case === 'data') {
      const o = ev.value.output;
      if (o.case === 'stdout') {
        out.push(Buffer.from(o.value));
        options.onStdout?.(o.value);
      } else if (o.case === 'stderr') {
        err.push(Buffer.from(o.value));
        options.onStderr?.(o.value);
      }
    } else if (ev?.case === 'end') {
      return {
        exitCode: ev.value.exitCode,
        status: ev.value.status,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
    }
  }
  throw new Error('envd ended the command stream without an end event');
}
