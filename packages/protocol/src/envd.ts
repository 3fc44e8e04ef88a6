// envd's Connect services (process.Process, filesystem.Filesystem) and their messages,
// generated from proto/ by `npm run generate` (protoc-gen-es).

// envd's REST contract: port, header names, the fields of /init, and (with TypeBox) the
// schemas of its JSON bodies.
export * from './envd-rest.js';
export * from './envd-rest-schemas.js';
export * from './envd-status.js';
export * from './file-signature.js';
export * as filesystem from './gen/filesystem/filesystem_pb.js';
export * as process from './gen/process/process_pb.js';
