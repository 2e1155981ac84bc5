/** Activity header that carries the execution's vault key (sealed unless sealing is off). */
export const VAULT_KEY_HEADER = 'keybrake-vault-key';

/** `ApplicationFailure` type of a cap hit: terminal, never retried. */
export const CAP_EXHAUSTED_FAILURE = 'KeybrakeCapExhausted';

/** `ApplicationFailure` type of a vendor's own 429: retried after the vendor's `Retry-After`. */
export const VENDOR_RATE_LIMITED_FAILURE = 'KeybrakeVendorRateLimited';

/** The vault key as it travels through workflow history: `vaultKey` is sealed when `sealed`. */
export interface VaultKeyRef {
  readonly keyId: string;
  readonly vaultKey: string;
  readonly sealed: boolean;
  readonly expiresAt: string;
}
