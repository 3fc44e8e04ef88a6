/**
 * The console's one way to the server: the public API on the same origin, authenticated
 * by the session cookie (the browser sends it; script cannot read it). Every call carries
 * `X-Aiva-Console: 1`, which the server requires of a cookie-authenticated call that
 * changes something (a cross-site form cannot send a custom header).
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { 'X-Aiva-Console': '1', accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const message = (data as { message?: unknown } | undefined)?.message;
    throw new ApiError(res.status, typeof message === 'string' ? message : `${res.status} ${res.statusText}`);
  }
  return data as T;
}

/** Who the session stands for (`GET /v1/console/session`). */
export interface Session {
  teamId: string;
  keyId: string;
  scopes: string[];
  expiresAt: string;
  /** The key is of the operator team (it sees every team, and the nodes). */
  operator?: boolean;
  /** This server has nodes to manage (cluster mode). */
  nodes?: boolean;
}

/** A sandbox as `GET /v2/sandboxes` and the stream list it. */
export interface ListedSandbox {
  sandboxID: string;
  templateID: string;
  alias?: string;
  clientID: string;
  cpuCount: number;
  memoryMB: number;
  diskSizeMB: number;
  startedAt: string;
  endAt: string;
  envdVersion: string;
  state: 'running' | 'paused';
  metadata?: Record<string, string>;
  /** Its team: in the operator's list of every team's (`?teams=all`) only. */
  teamID?: string;
}

/** A template as `GET /templates` lists it (the fields the console shows). */
export interface Template {
  templateID: string;
  aliases?: string[];
  names?: string[];
  cpuCount: number;
  memoryMB: number;
  buildStatus?: string;
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
