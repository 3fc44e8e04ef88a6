import { CommandError } from '../host/command.js';
import { ImageBuildError } from './build-reporter.js';

/** Why an OCI image could not be pulled or imported, for callers that map it (HTTP status, CLI hint). */
export type OciErrorReason =
  /** Not a valid image reference, path or archive. */
  | 'reference'
  /** The registry has no such repository or tag (manifest unknown). */
  | 'not-found'
  /** 401/denied: credentials wrong, or required. */
  | 'unauthorized'
  /** An image index without a linux/amd64 image. */
  | 'platform'
  /** A manifest, config or layer of a kind we cannot unpack. */
  | 'media-type'
  /** Connection refused, no such host, timeout, TLS failure. */
  | 'unreachable'
  /** The content contradicts itself (digest mismatch) or a layer cannot be unpacked safely. */
  | 'invalid'
  /** Interrupted through the AbortSignal. */
  | 'interrupted'
  /** Anything else skopeo or tar reported; the message carries their words. */
  | 'failed';

/**
 * A registry image or an image archive could not be made into layers. A kind of
 * ImageBuildError (a template build's step failed); the message names the image.
 */
export class OciImageError extends ImageBuildError {
  override name = 'OciImageError';
  constructor(
    /** The image as given (reference or path). */
    readonly reference: string,
    readonly reason: OciErrorReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(reference, message, options);
  }
}

/** The message of skopeo's `level=fatal msg="…"` line, unquoted, else its output's last line. */
function skopeoMessage(output: string): string {
  const fatal = /level=fatal msg="((?:[^"\\]|\\.)*)"/.exec(output);
  if (fatal?.[1]) return fatal[1].replace(/\\(.)/g, '$1');
  return output.trim().split('\n').at(-1) ?? '';
}

/** The OciImageError a failed skopeo command means, worded for the person who asked for `image`. */
export function skopeoError(image: string, e: unknown, withCredentials: boolean): OciImageError {
  if (!(e instanceof CommandError)) {
    return new OciImageError(image, 'failed', `${image}: ${(e as Error).message}`, { cause: e });
  }
  if (e.aborted) return new OciImageError(image, 'interrupted', `${image}: interrupted`, { cause: e });
  const said = skopeoMessage(e.output);
  const fail = (reason: OciErrorReason, what: string) =>
    new OciImageError(image, reason, `${image}: ${what} (skopeo: ${said})`, { cause: e });
  if (e.exitCode === null && !e.signal) return fail('failed', 'skopeo could not be run');
  if (/manifest unknown|name unknown|repository name not known/i.test(said)) {
    return fail('not-found', 'no such image: the registry knows no such repository or tag');
  }
  if (/unauthorized|authentication required|denied|status 401|status 403/i.test(said)) {
    return fail(
      'unauthorized',
      withCredentials
        ? 'the registry refused the credentials: wrong username or password, or no access to this repository'
        : 'the registry requires credentials for this image (some registries also say so for a repository that does not exist)',
    );
  }
  if (/no image found in (manifest list|image index)|choosing (an image|image instance)/i.test(said)) {
    return fail('platform', 'the image index has no linux/amd64 image');
  }
  if (/x509:|certificate|tls:|HTTP response to HTTPS client/i.test(said)) {
    return fail('unreachable', 'no TLS connection to the registry could be verified');
  }
  if (
    /pinging container registry|dial tcp|connection refused|no such host|i\/o timeout|network is unreachable|server misbehaving|connection reset/i.test(
      said,
    )
  ) {
    return fail('unreachable', 'the registry is unreachable');
  }
  if (/unsupported|unknown media ?type|mime ?type/i.test(said)) {
    return fail('media-type', 'the image is of a kind that cannot be copied');
  }
  return fail('failed', 'skopeo failed');
}
