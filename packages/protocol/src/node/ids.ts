import { randomBytes } from 'node:crypto';

// Sandbox ids are made by the server (the control plane), never by a node: a command
// names the sandbox it makes, so a command delivered twice cannot make two.

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** What a sandbox id looks like (E2B's are 20 characters of these). */
export const SANDBOX_ID_PATTERN = /^[a-z0-9]{1,40}$/;

/** A new sandbox id: 20 random characters of [a-z0-9]. */
export function newSandboxId(): string {
  return Array.from(randomBytes(20), (b) => ID_ALPHABET[b % ID_ALPHABET.length]).join('');
}
