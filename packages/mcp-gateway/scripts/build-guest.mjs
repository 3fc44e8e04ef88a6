// Bundles the gateway to one file for the guest, dist/guest/gateway.js (CommonJS, for the
// guest layer's Node runtime), with the MCP SDK inside it, and copies its launcher beside it.
import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(pkg, 'dist', 'guest');

await mkdir(out, { recursive: true });
await build({
  entryPoints: [join(pkg, 'dist', 'src', 'main.js')],
  bundle: true,
  platform: 'node',
  target: 'node18',
  format: 'cjs',
  outfile: join(out, 'gateway.js'),
  logLevel: 'warning',
});
await writeFile(join(out, 'package.json'), '{ "type": "commonjs" }\n');
await copyFile(join(pkg, 'guest', 'mcp-gateway'), join(out, 'mcp-gateway'));
await chmod(join(out, 'mcp-gateway'), 0o755);
