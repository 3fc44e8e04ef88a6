import { InvalidRequestError } from './errors.js';

/** E2B's name rules: names (aliases) of lower-case letters, digits, - and _; tags may also have dots. */
const NAME = /^[a-z0-9_-]{1,128}$/;
const TAG = /^[a-z0-9_.-]{1,128}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The tag a name without one means (E2B's). */
export const DEFAULT_TAG = 'default';

/** `[team/]name[:tag]`, trimmed and lower-cased, checked; the tag is undefined when not given. */
export function parseTemplateRef(ref: string): { name: string; tag?: string } {
  const text = ref.trim().toLowerCase();
  const slash = text.lastIndexOf('/');
  const bare = slash >= 0 ? text.slice(slash + 1) : text;
  const colon = bare.indexOf(':');
  const name = colon >= 0 ? bare.slice(0, colon) : bare;
  const tag = colon >= 0 ? bare.slice(colon + 1) : undefined;
  if (!NAME.test(name))
    throw new InvalidRequestError(`template name "${name}" is not 1–128 lower-case letters, digits, - and _`);
  if (tag !== undefined) checkTag(tag);
  return { name, tag };
}

export function checkTag(tag: string): string {
  if (!TAG.test(tag) || UUID.test(tag))
    throw new InvalidRequestError(
      `tag "${tag}" is not 1–128 lower-case letters, digits, -, _ and . (and not a UUID)`,
    );
  return tag;
}
