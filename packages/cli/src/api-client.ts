import { readCredentials } from './commands/up.js';

/** Where the running `aiva up` is and the key to call it with: E2B_API_URL/E2B_API_KEY, else credentials.json. */
export async function apiTarget(): Promise<{ apiUrl: string; apiKey: string }> {
  const saved = await readCredentials();
  const apiUrl = process.env.E2B_API_URL ?? saved?.apiUrl;
  const apiKey = process.env.E2B_API_KEY ?? saved?.apiKey;
  if (!apiUrl || !apiKey)
    throw new Error('no running aiva server is known: start `aiva up`, or set E2B_API_URL and E2B_API_KEY');
  return { apiUrl, apiKey };
}

/** A 4xx/5xx answer of the server: its message, and its status. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Calls the server's API; a 4xx/5xx answer is an ApiError carrying the server's message. */
export async function callApi<T>(method: string, path: string, body?: unknown): Promise<T> {
  const { apiUrl, apiKey } = await apiTarget();
  let res: Response;
  try {
    res = await fetch(`${apiUrl}${path}`, {
      method,
      headers: { 'x-api-key': apiKey, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (e) {
    throw new Error(
      `cannot reach the aiva server at ${apiUrl} (is \`aiva up\` running?): ${(e as Error).message}`,
    );
  }
  const text = await res.text();
  const json = text ? (JSON.parse(text) as unknown) : undefined;
  if (!res.ok)
    throw new ApiError(
      (json as { message?: string } | undefined)?.message ?? `HTTP ${res.status}`,
      res.status,
    );
  return json as T;
}
