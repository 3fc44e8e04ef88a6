export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What `f` answers once it answers something (errors count as nothing yet), polled every 500 ms for up to `ms`. */
export async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(500);
  }
}
