// A static file server for the test "internet" (see TestInternet.serveDirectory), run
// inside its namespace: GET and HEAD of the files under DIR, read when asked.
//
//   node test-internet-static.js ADDRESS PORT DIR
//
// A request for a directory (with or without a trailing slash, never redirected) gets its
// index.html, or else its index.json: enough for a flat apt repository, a PEP 503 simple
// index (`/simple/<name>/`) and an npm registry (`/<name>` → `<name>/index.json`, tarballs
// at `/<name>/-/<file>.tgz`). Anything else is 404.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import { extname, join, normalize } from 'node:path';

const [address, port, root] = process.argv.slice(2);
if (!address || !port || !root) throw new Error('usage: test-internet-static.js ADDRESS PORT DIR');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.json': 'application/json',
  '.deb': 'application/vnd.debian.binary-package',
  '.tgz': 'application/octet-stream',
};

/** The file a URL path names under `root`, or undefined (missing, or outside `root`). */
async function resolve(urlPath: string): Promise<string | undefined> {
  const path = join(root as string, normalize(`/${decodeURIComponent(urlPath)}`));
  const s = await stat(path).catch(() => undefined);
  if (s?.isFile()) return path;
  if (!s?.isDirectory()) return undefined;
  for (const index of ['index.html', 'index.json']) {
    if ((await stat(join(path, index)).catch(() => undefined))?.isFile()) return join(path, index);
  }
  return undefined;
}

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405).end();
    return;
  }
  resolve(path).then(
    async (file) => {
      if (!file) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end(`${path}: not found\n`);
        return;
      }
      const { size } = await stat(file);
      res.writeHead(200, {
        'content-type': TYPES[extname(file)] ?? 'application/octet-stream',
        'content-length': size,
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
    },
    () => res.writeHead(400).end(),
  );
});
server.listen({ host: address, port: Number(port) });
process.on('SIGTERM', () => process.exit(0));
