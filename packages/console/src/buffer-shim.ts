/**
 * The one use of Node's `Buffer` in the console's bundle: dockerfile-ast reads a
 * character's UTF-8 bytes with `Buffer.from(char, 'UTF-8')` (to spot a byte-order mark).
 * esbuild's `inject` gives that module this instead (see build.mjs); nothing else sees it.
 */
export const Buffer = {
  from: (text: string): Uint8Array => new TextEncoder().encode(text),
};
