import { createHash, randomBytes } from 'node:crypto';

/** Keys look like E2B's: `e2b_` and 40 lower-case hex digits (the SDK checks the format). */
export const API_KEY_PATTERN = /^e2b_[0-9a-f]{40}$/;

export function newApiKey(): string {
  return `e2b_${randomBytes(20).toString('hex')}`;
}

/** What is stored instead of the key: its SHA-256, in hex. */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** Enough of a key to tell keys apart in a listing, not enough to use. */
export function apiKeyPrefix(key: string): string {
  return `${key.slice(0, 10)}…`;
}
