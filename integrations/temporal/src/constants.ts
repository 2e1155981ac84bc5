/** Activity header that carries the execution's vault key (sealed unless sealing is off). */
export const VAULT_KEY_HEADER = 'keybrake-vault-key';

/** `ApplicationFailure` type of a cap hit: terminal, never retried. */
export const CAP_EXHAUSTED_FAILURE = 'KeybrakeCapExhausted';

/**
 * `ApplicationFailure` type of a call refused because its key is tainted (the activity ran under
 * `untrustedActivities`, or the execution's key is tainted): terminal, never retried.
 */
export const TAINTED_REQUEST_REFUSED_FAILURE = 'KeybrakeTaintedRequestRefused';

/**
 * The `ApplicationFailure` type of each Keybrake refusal a retry cannot change: `Keybrake` + the
 * error code in PascalCase (`cap_exhausted` → `KeybrakeCapExhausted`).
 */
export function refusalFailureType(code: string): string {
  return `Keybrake${code
    .split('_')
    .map((word) => word.charAt(0).toUpperCase() + word.slice(1))
    .join('')}`;
}

/**
 * Issue 26: `ApplicationFailure` types of a call refused by a request or concurrency limit of the
 * key (or an ancestor's): retryable, after the proxy's `Retry-After` (`nextRetryDelay`).
 */
export const RATE_LIMITED_FAILURE = 'KeybrakeRateLimited';
export const CONCURRENCY_LIMITED_FAILURE = 'KeybrakeConcurrencyLimited';

/** `ApplicationFailure` type of a vendor's own 429: retried after the vendor's `Retry-After`. */
export const VENDOR_RATE_LIMITED_FAILURE = 'KeybrakeVendorRateLimited';

/** The vault key as it travels through workflow history: `vaultKey` is sealed when `sealed`. */
export interface VaultKeyRef {
  readonly keyId: string;
  readonly vaultKey: string;
  readonly sealed: boolean;
  readonly expiresAt: string;
  /** True for a key that can never move money (see `untrustedActivities`). */
  readonly tainted?: boolean;
}
