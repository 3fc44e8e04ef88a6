import { OciImageError } from './oci-errors.js';

/** A registry image reference, normalized the way Docker does. */
export interface ImageReference {
  /** Registry host, with its port if any: `docker.io`, `127.0.0.1:5000`. */
  registry: string;
  /** Repository path: `library/debian`. */
  repository: string;
  /** The tag, unless the reference names a digest. */
  tag?: string;
  /** `sha256:<hex>` when the reference pins a manifest. */
  digest?: string;
  /** The whole reference, fully qualified: `docker.io/library/debian:stable`. */
  name: string;
  /**
   * Plain HTTP allowed (and TLS unverified): the registry is on this host, like
   * Docker's default insecure registries (127.0.0.0/8, localhost).
   */
  insecure: boolean;
}

// The grammar of github.com/distribution/reference, restricted to what we accept.
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = new RegExp(`^${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function isLoopback(registry: string): boolean {
  const host = registry.replace(/:[0-9]+$/, '');
  if (host === 'localhost') return true;
  const octets = /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return octets?.slice(1).every((o) => Number(o) <= 255) ?? false;
}

/**
 * Parses `reference` as Docker does: without a registry it is Docker Hub
 * (`debian:stable` → `docker.io/library/debian:stable`), without a tag or digest it is
 * `:latest`. A reference with both a tag and a digest means the digest (skopeo takes
 * only one). Anything else is refused before any tool sees it.
 */
export function parseReference(reference: string): ImageReference {
  const refuse = (why: string) =>
    new OciImageError(reference, 'reference', `"${reference}" is not an image reference: ${why}`);
  if (reference.length === 0 || reference.length > 512) throw refuse('empty or too long');
  let rest = reference;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) throw refuse('a digest is sha256: and 64 lowercase hex digits');
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw refuse(`bad tag "${tag}"`);
  }
  const parts = rest.split('/');
  const first = parts[0] ?? '';
  let registry = 'docker.io';
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    registry = first === 'index.docker.io' ? 'docker.io' : first;
    parts.shift();
    if (!DOMAIN.test(registry)) throw refuse(`bad registry "${registry}"`);
  }
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library');
  if (parts.some((p) => !PATH_COMPONENT.test(p))) {
    throw refuse('a repository is lowercase letters, digits and separators (. _ __ -) between slashes');
  }
  const repository = parts.join('/');
  if (digest) tag = undefined;
  else tag ??= 'latest';
  const name = `${registry}/${repository}${digest ? `@${digest}` : `:${tag}`}`;
  return { registry, repository, tag, digest, name, insecure: isLoopback(registry) };
}
