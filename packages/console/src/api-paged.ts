import { ApiError } from './api.js';

/**
 * A GET of the public API that also gives the answer's headers (E2B's lists say where the
 * next page starts in `X-Next-Token`); errors as `api()` throws them.
 */
export async function getWithHeaders<T>(path: string): Promise<{ data: T; headers: Headers }> {
  const res = await fetch(path, {
    credentials: 'same-origin',
    headers: { 'X-Aiva-Console': '1', accept: 'application/json' },
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
  return { data: data as T, headers: res.headers };
}
