// Bundles the server to one file for the guest, dist/guest/server.js (target Node 18,
// like envd's), with zeromq's JavaScript inside it, and copies beside it the one
// prebuilt zeromq addon a Linux x64 glibc guest needs (it links libzmq statically and
// needs GLIBC_2.25; nothing is compiled or downloaded). The bundle loads that addon
// from its own directory instead of through zeromq's manifest-based loader. The
// Python start-up code for IPython kernels and aiva's bash kernel (guest/*.py) and the JavaScript kernel's
// launcher (guest/js-*.cjs) are copied beside it.
import { chmod, copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = join(here, '..');
const out = join(pkg, 'dist', 'guest');
const require = createRequire(join(pkg, 'package.json'));
const zeromqDir = dirname(require.resolve('zeromq/package.json'));
const ADDON = 'build/linux/x64/node/glibc-127-Release/addon.node';

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(pkg, 'dist', 'src', 'main.js')],
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  outfile: join(out, 'server.js'),
  logLevel: 'warning',
  plugins: [
    {
      name: 'zeromq-addon-beside-bundle',
      setup(b) {
        b.onResolve({ filter: /^\.\/load-addon$/ }, (args) =>
          args.importer.startsWith(zeromqDir) ? { path: 'zeromq-addon', namespace: 'aiva' } : undefined,
        );
        b.onLoad({ filter: /.*/, namespace: 'aiva' }, () => ({
          contents:
            'const { join } = require("node:path");\n' +
            'module.exports = require(join(__dirname, "zeromq.node"));\n',
          loader: 'js',
        }));
      },
    },
  ],
});
await copyFile(join(zeromqDir, ADDON), join(out, 'zeromq.node'));
await writeFile(join(out, 'package.json'), '{ "type": "commonjs" }\n');
await copyFile(join(pkg, 'guest', 'start'), join(out, 'start'));
// The JavaScript/TypeScript kernel's launcher, run as they are by the template's node 18
// (its npm packages are installed in the template; see images/code-interpreter-v1).
for (const f of ['js-kernel.cjs', 'js-transpile.cjs']) await copyFile(join(pkg, 'guest', f), join(out, f));
await chmod(join(out, 'start'), 0o755);
// The IPython kernels' start-up code (kernel-tuning.ts passes it as exec_files) and
// aiva's bash kernel (Python, on the template's ipykernel), found by kernel-specs.ts.
for (const name of await readdir(join(pkg, 'guest'))) {
  if (name.endsWith('.py')) await copyFile(join(pkg, 'guest', name), join(out, name));
}
