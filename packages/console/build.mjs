#!/usr/bin/env node
// Bundles the console (src/main.tsx and src/app.css) into dist/: index.html, app.js,
// app.css — static files the server serves, nothing fetched from elsewhere at run time.
// The sandbox page's tools are a chunk of their own (chunk-<hash>.js). Prints each file's
// size and gzip size when AIVA_CONSOLE_SIZES is set.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({
  entryPoints: { app: join(here, 'src/main.tsx') },
  bundle: true,
  minify: true,
  sourcemap: false,
  format: 'esm',
  // The sandbox page's terminal and file browser come in a chunk of their own, loaded there.
  splitting: true,
  chunkNames: 'chunk-[hash]',
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  // dockerfile-ast (the Dockerfile form's parser) calls Node's Buffer once: a browser stand-in.
  inject: [join(here, 'src/buffer-shim.ts')],
  outdir: out,
  logLevel: 'warning',
});
for (const f of ['index.html', 'favicon.svg']) copyFileSync(join(here, 'src', f), join(out, f));
const chunks = readdirSync(out).filter((f) => f.startsWith('chunk-'));
for (const f of ['index.html', 'app.js', 'app.css', ...chunks]) {
  const bytes = readFileSync(join(out, f));
  if (process.env.AIVA_CONSOLE_SIZES)
    console.log(`console ${f}: ${bytes.length} bytes, ${gzipSync(bytes).length} gzip`);
}
