import { fileURLToPath } from 'node:url';

/** The directory of template recipes: `AIVA_RECIPES`, else the images/ shipped with aiva. */
export const recipesDir =
  process.env.AIVA_RECIPES || fileURLToPath(new URL('../../../../images', import.meta.url));

/** envd's guest files (bundle and helpers), as the image builder installs them into templates. */
export const envdDir = fileURLToPath(new URL('./', import.meta.resolve('@aiva/envd/guest/envd.js')));

/** The MCP gateway's guest files, installed into every template's guest layer. */
export const mcpGatewayDir = fileURLToPath(
  new URL('./', import.meta.resolve('@aiva/mcp-gateway/guest/gateway.js')),
);

/** The code-interpreter server's guest files, installed into every template's guest layer. */
export const codeInterpreterDir = fileURLToPath(
  new URL('./', import.meta.resolve('@aiva/code-interpreter/guest/server.js')),
);
