import { fileURLToPath } from 'node:url';

/** The repository's images/ directory (tests run from packages/node/dist/test). */
export const repoImages = fileURLToPath(new URL('../../../../../images', import.meta.url));

/** envd's guest files, as the image builder installs them. */
export const envdDir = fileURLToPath(new URL('../../../../envd/dist/guest', import.meta.url));
