export { fileSignature } from '@aiva/protocol';
export { createEnvdServer, type EnvdOptions } from './server.js';
export { EnvdState } from './state.js';
export { ENVD_VERSION } from './version.js';
