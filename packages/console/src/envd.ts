import { Filesystem } from '@aiva/protocol/filesystem';
import { Process } from '@aiva/protocol/process';
import { type Client, createClient, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage } from './api.js';

/**
 * A sandbox's envd, from the browser, the way E2B's SDK reaches it: on the server's own
 * origin, routed to the sandbox by E2B's headers (`E2b-Sandbox-Id`, `E2b-Sandbox-Port`),
 * authenticated by the sandbox's envd access token (`X-Access-Token`, which `GET
 * /sandboxes/{id}` returns), as the user `user` (SDK's default). These requests carry no
 * cookie: the console's session is for the API, never for a sandbox.
 */

const ENVD_PORT = '49983';
/** The guest user the console acts as, like the SDK's default. */
export const ENVD_USER = 'user';
/** Seconds between envd's keepalive messages on a stream (the SDK's value). */
const KEEPALIVE_S = '50';

export interface Envd {
  process: Client<typeof Process>;
  fs: Client<typeof Filesystem>;
  /** A call to envd's REST routes (`/files?…`) with the routing and token headers. */
  rest: (pathAndQuery: string, init?: RequestInit) => Promise<Response>;
}

/** No cookie leaves for a sandbox; the routing and token headers go instead. */
function envdFetch(headers: Record<string, string>): typeof fetch {
  return (input, init) => {
    const h = new Headers(init?.headers);
    for (const [k, v] of Object.entries(headers)) h.set(k, v);
    return fetch(input, { ...init, headers: h, credentials: 'omit' });
  };
}

export function envdOf(sandboxId: string, accessToken: string | undefined): Envd {
  const headers: Record<string, string> = {
    'E2b-Sandbox-Id': sandboxId,
    'E2b-Sandbox-Port': ENVD_PORT,
    ...(accessToken ? { 'X-Access-Token': accessToken } : {}),
  };
  const fetchEnvd = envdFetch(headers);
  const asUser: Interceptor = (next) => (req) => {
    req.header.set('Authorization', `Basic ${btoa(`${ENVD_USER}:`)}`);
    if (req.stream) req.header.set('Keepalive-Ping-Interval', KEEPALIVE_S);
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: window.location.origin,
    useBinaryFormat: true,
    fetch: fetchEnvd,
    interceptors: [asUser],
  });
  return {
    process: createClient(Process, transport),
    fs: createClient(Filesystem, transport),
    rest: (pathAndQuery, init) => fetchEnvd(new URL(pathAndQuery, window.location.origin), init),
  };
}

/** envd's clients for a running sandbox (its token read once), or the error reading it. */
export function useEnvd(sandboxId: string): { envd?: Envd; error?: string } {
  const [state, setState] = useState<{ envd?: Envd; error?: string }>({});
  useEffect(() => {
    let live = true;
    api<{ envdAccessToken?: string }>('GET', `/sandboxes/${sandboxId}`).then(
      (s) => live && setState({ envd: envdOf(sandboxId, s.envdAccessToken) }),
      (e) => live && setState({ error: errorMessage(e) }),
    );
    return () => {
      live = false;
    };
  }, [sandboxId]);
  return state;
}

/** The message of a REST answer from envd that is not 2xx (its JSON `message`, or the status). */
export async function restError(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const message = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof message === 'string') return message;
  } catch {}
  return `${res.status} ${res.statusText}`;
}
