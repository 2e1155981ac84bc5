import { VaultKeyExpiredError, VaultKeyRevokedError } from '../errors.js';

/** A key's state as the contract names it. */
export type KeyStatus = 'active' | 'revoked' | 'expired';

/** The fields of a key record its state depends on. */
export interface KeyLifetime {
  readonly keyId: string;
  readonly revokedAt: number | null;
  readonly expiresAt: number;
}

/** `active`, `revoked` or `expired` at `now` (epoch ms). A revoked key stays revoked once expired. */
export function keyStatus(key: Omit<KeyLifetime, 'keyId'>, now: number): KeyStatus {
  if (key.revokedAt !== null) return 'revoked';
  return key.expiresAt <= now ? 'expired' : 'active';
}

/**
 * The refusal for a key that is not active at `now`, or `undefined` when it is: the proxy's
 * 401 `vault_key_revoked` / `vault_key_expired`.
 */
export function inactiveKeyError(
  key: KeyLifetime,
  now: number,
): VaultKeyRevokedError | VaultKeyExpiredError | undefined {
  const status = keyStatus(key, now);
  if (status === 'revoked') return new VaultKeyRevokedError(key.keyId);
  if (status === 'expired') return new VaultKeyExpiredError(key.keyId);
  return undefined;
}
