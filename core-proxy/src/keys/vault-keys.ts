import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Every vault key starts with this, so the Twilio module can tell it from an account SID. */
export const VAULT_KEY_PREFIX = 'kb_vk_';

/** A new vault key: 256 random bits, base64url. Shown once, stored only as its hash. */
export function newVaultKey(): string {
  return `${VAULT_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** A new public key id. */
export function newKeyId(): string {
  return `key_${randomBytes(12).toString('base64url')}`;
}

/**
 * SHA-256 of a vault key, as stored and looked up. A fast hash is right here: the key carries 256
 * bits of entropy, so there is nothing for a slow hash to protect against.
 */
export function hashVaultKey(vaultKey: string): string {
  // One-shot: no Hash object per call (issue 21).
  return hash('sha256', vaultKey, 'hex');
}

/**
 * Compares a presented admin key with every configured one in constant time: each comparison is
 * over fixed-length digests, and all keys are compared whatever matches first.
 */
export function matchesAnyApiKey(presented: string, apiKeyDigests: readonly Buffer[]): boolean {
  const digest = createHash('sha256').update(presented).digest();
  let matched = false;
  for (const expected of apiKeyDigests) {
    matched = timingSafeEqual(digest, expected) || matched;
  }
  return matched;
}

/** Digests of the configured admin keys, computed once at start-up. */
export function digestApiKeys(apiKeys: readonly string[]): Buffer[] {
  return apiKeys.map((key) => createHash('sha256').update(key).digest());
}
