/**
 * The envd version this daemon reports (`/health` header, `/metrics`, logs). The e2b SDK
 * gates features on it (0.3.0 stdin:false … 0.6.3 watch includeEntry, 0.6.4 network
 * mounts), so it only claims a version whose every feature is implemented here.
 */
export const ENVD_VERSION = '0.6.4';
