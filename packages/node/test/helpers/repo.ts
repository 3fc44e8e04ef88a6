import { fileURLToPath } from 'node:url';

/** The repository's images/ directory (tests run from packages/node/dist/test). */
export const repoImages = fileURLToPath(new URL('../../../../../images', import.meta.url));

/** The envd bundle the image builder installs. */
export const envdBundle = fileURLToPath(new URL('../../../../envd/dist/envd.js', import.meta.url));
