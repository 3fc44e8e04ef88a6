import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

/** The console's client-side pages: the server answers index.html there, the page does the rest. */
export const CONSOLE_PAGES = '/ui/*';

/**
 * Only the console's own files, from this origin; no framing. Styles may also be inline:
 * the terminal (xterm.js's DOM renderer) sizes and colours its cells with <style>
 * elements and style attributes it writes at run time; scripts stay the console's own.
 */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/** Where `@aiva/console`'s built files are, or undefined when it is not built (or not installed). */
export function consoleDist(): string | undefined {
  try {
    const dir = join(dirname(createRequire(import.meta.url).resolve('@aiva/console/package.json')), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The web console (`packages/console`): index.html at `/` and at the console's pages
 * (`/ui/…`), its script and style at `/console/…`. None of these is an E2B route. When the
 * console is not built, `/` says so (503) instead.
 */
export async function registerConsole(app: FastifyInstance, dist: string | undefined): Promise<void> {
  if (!dist) {
    const notBuilt = async (_: unknown, reply: FastifyReply) =>
      reply
        .code(503)
        .type('text/html; charset=utf-8')
        .send(
          '<!doctype html><title>aiva</title><p>The aiva web console is not built. Run <code>npm run build</code> at the root of aiva, then restart the server. The API is served as usual.</p>',
        );
    app.get('/', { schema: { hide: true } }, notBuilt);
    app.get(CONSOLE_PAGES, { schema: { hide: true } }, notBuilt);
    return;
  }
  await app.register(fastifyStatic, {
    root: dist,
    prefix: '/console/',
    index: false,
    maxAge: 0,
    setHeaders: (res) => {
      for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    },
  });
  const page = async (_: unknown, reply: FastifyReply) =>
    reply.headers({ ...SECURITY_HEADERS, 'cache-control': 'no-cache' }).sendFile('index.html');
  app.get('/', { schema: { hide: true } }, page);
  app.get(CONSOLE_PAGES, { schema: { hide: true } }, page);
}
