#!/usr/bin/env node
// Bundles the console (src/main.tsx and src/app.css) into dist/: index.html, app.js,
// app.css — static files the server serves, nothing fetched from elsewhere at run time.
// Prints each file's size and gzip size.
import { copyFileSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
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
  target: ['chrome110', 'firefox110', 'safari16'],
  jsx: 'automatic',
  jsxImportSource: 'preact',
  outdir: out,
  logLevel: 'warning',
});
for (const f of ['index.html', 'favicon.svg']) copyFileSync(join(here, 'src', f), join(out, f));
for (const f of ['index.html', 'app.js', 'app.css']) {
  const bytes = readFileSync(join(out, f));
  if (process.env.AIVA_CONSOLE_SIZES)
    console.log(`console ${f}: ${bytes.length} bytes, ${gzipSync(bytes).length} gzip`);
}
