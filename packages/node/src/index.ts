export { CommandError, runCommand } from './host/command.js';
export { lockFile } from './host/file-lock.js';
export { type BuildReporter, ImageBuildError, silentReporter } from './image/build-reporter.js';
export {
  GUEST_DIR,
  GUEST_INIT,
  type GuestKernel,
  ImageStore,
  type ImageStoreOptions,
  type ResolvedKernel,
  type ResolvedTemplate,
  type StoredArtefact,
  type TemplateImage,
} from './image/image-store.js';
export { RecipeError } from './image/recipe.js';
export { dataDir } from './paths.js';
