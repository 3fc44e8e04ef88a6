import { fileURLToPath } from 'node:url';

/** The directory of template recipes: `AIVA_RECIPES`, else the images/ shipped with aiva. */
export const recipesDir =
  process.env.AIVA_RECIPES || fileURLToPath(new URL('../../../../images', import.meta.url));

/** envd bundled to one file, as the image builder installs it into templates. */
export const envdBundle = fileURLToPath(import.meta.resolve('@aiva/envd/bundle'));
