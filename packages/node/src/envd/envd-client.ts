import { constants } from 'node:os';
import { ENVD_ACCESS_TOKEN_HEADER, ENVD_PORT, ENVD_SIGNAL_TEXT, process as pp } from '@aiva/protocol';
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
  /**
   * Keep the output for the result's `stdout` and `stderr` (default true). A caller that
   * streams it through `onStdout`/`onStderr` can say false, so that a long or endless
   * output does not pile up in memory.
   */
  keepOutput?: boolean;
  /** Abandons the call (the command's stream) when aborted. */
  signal?: AbortSignal;
}

export interface ExecResult {
  /** The exit code, or -1 if the command was killed by a signal. */
  exitCode: number;
  /** envd's status text: "exit status 1", "signal: killed" … */
  status: string;
  /** The signal that killed the command, if one did ("signal: killed" → SIGKILL). */
  signal?: NodeJS.Signals;
  stdout: string;
  stderr: string;
}

/** envd's end status text of each signal ("killed" → SIGKILL). */
const SIGNAL_BY_TEXT = new Map(
  Object.entries(ENVD_SIGNAL_TEXT).map(([signal, text]) => [text as string, signal as NodeJS.Signals]),
);

/** The signal an envd end status names ("signal: killed" → SIGKILL), if it names one this host knows. */
export function signalOfStatus(status: string): NodeJS.Signals | undefined {
  const m = /^signal: (.+)$/.exec(status.trim());
  if (!m?.[1]) return undefined;
  const text = m[1];
  const known = SIGNAL_BY_TEXT.get(text);
  if (known) return known;
  const name = text.toUpperCase();
  if (name in constants.signals) return name as NodeJS.Signals;
  // "signal 34": a number Go has no name for.
  const n = /^signal (\d+)$/.exec(text)?.[1];
  const byNumber = Object.entries(constants.signals).find(([, v]) => v === Number(n));
  return byNumber?.[0] as NodeJS.Signals | undefined;
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
  const call: CallOptions = {
    headers: envdHeaders(options),
    timeoutMs: options.timeoutMs,
    signal: options.signal,
  };
  const keep = options.keepOutput ?? true;
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
        if (keep) out.push(Buffer.from(o.value));
        options.onStdout?.(o.value);
      } else if (o.case === 'stderr') {
        if (keep) err.push(Buffer.from(o.value));
        options.onStderr?.(o.value);
      }
    } else if (ev?.case === 'end') {
      const signal = signalOfStatus(ev.value.status);
      return {
        exitCode: ev.value.exitCode,
        status: ev.value.status,
        ...(signal ? { signal } : {}),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      };
    }
  }
  throw new Error('envd ended the command stream without an end event');
}

/** A command started in the sandbox that keeps running after the call returns. */
export interface StartedCommand {
  pid: number;
  /** The last lines it printed while it was watched (for a failure message). */
  tail(): string;
  /** Resolves with its end status text if it ends while watched. */
  ended: Promise<string>;
  /** Stops watching it; envd keeps it running. */
  release(): void;
}

/**
 * Starts `command` with bash in the sandbox and returns once envd says it started,
 * watching its output until `release`: a template's start command, which must go on
 * running in the sandbox after the create that started it.
 */
export async function startInSandbox(
  address: string,
  command: string,
  options: Omit<ExecOptions, 'timeoutMs' | 'keepOutput'> = {},
): Promise<StartedCommand> {
  const transport = createConnectTransport({
    baseUrl: `http://${address}:${options.port ?? ENVD_PORT}`,
    httpVersion: '1.1',
    useBinaryFormat: true,
  });
  const client = createClient(pp.Process, transport);
  const watching = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, watching.signal]) : watching.signal;
  const stream = client.start(
    {
      process: { cmd: '/bin/bash', args: ['-l', '-c', command], envs: options.envs ?? {}, cwd: options.cwd },
      stdin: false,
    },
    { headers: envdHeaders(options), signal },
  );
  const lines: string[] = [];
  const keep = (chunk: Uint8Array) => {
    lines.push(...Buffer.from(chunk).toString('utf8').split('\n').filter(Boolean));
    if (lines.length > 40) lines.splice(0, lines.length - 40);
  };
  const iterator = stream[Symbol.asyncIterator]();
  const first = await iterator.next();
  const ev = first.done ? undefined : first.value.event?.event;
  if (ev?.case !== 'start') throw new Error('envd did not start the command');
  const pid = ev.value.pid;
  const ended = (async () => {
    try {
      for (let r = await iterator.next(); !r.done; r = await iterator.next()) {
        const e = r.value.event?.event;
        if (e?.case === 'data') {
          const o = e.value.output;
          if (o.case === 'stdout' || o.case === 'stderr') keep(o.value);
        } else if (e?.case === 'end') return e.value.status;
      }
    } catch {
      // Released, or the sandbox went away: the caller knows which.
    }
    return new Promise<string>(() => {});
  })();
  return { pid, tail: () => lines.join('\n'), ended, release: () => watching.abort() };
}
