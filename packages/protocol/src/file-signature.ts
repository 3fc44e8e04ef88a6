// The signature of a file URL (`GET|POST /files?path=&username=&signature=
// [&signature_expiration=]`), as E2B's SDK makes it with the sandbox's envd access token:
// envd checks it, and the server finds by it which sandbox a signed URL on the shared
// sandbox URL is for.
import { createHash } from 'node:crypto';

/**
 * The v1 signature of a file URL: "v1_" + unpadded base64 of
 * sha256("<path>:<read|write>:<user>:<token>[:<expiration>]").
 */
export function fileSignature(
  path: string,
  operation: 'read' | 'write',
  username: string,
  token: string,
  expiration?: number,
): string {
  const parts = [path, operation, username, token];
  if (expiration !== undefined) parts.push(String(expiration));
  return `v1_${createHash('sha256').update(parts.join(':')).digest('base64').replace(/=+$/, '')}`;
}
