import { keybrakeRefusal, type TerminalRefusal } from './refusal.js';

/**
 * The exit code of a process ended by a final Keybrake refusal: one per refusal, so a pod's exit
 * code alone says what happened. 75 is a cap hit. Workflow engines that retry on exit codes
 * (Argo's `retryStrategy.expression`, Kubernetes Jobs' `podFailurePolicy`) must not retry any of
 * them: the same call with the same key meets the same answer.
 *
 * The range 75–81 is the contract: {@link KEYBRAKE_EXIT_CODE_MIN}..{@link KEYBRAKE_EXIT_CODE_MAX}.
 */
export const KEYBRAKE_EXIT_CODES: Readonly<Record<TerminalRefusal, number>> = Object.freeze({
  cap_exhausted: 75,
  tainted_request_refused: 76,
  endpoint_not_allowed: 77,
  vendor_mismatch: 78,
  vault_key_revoked: 79,
  vault_key_expired: 80,
  invalid_vault_key: 81,
});

/**
 * Issue 26: the exit code of a process ended after a request or concurrency limit refused its call
 * (`rate_limited`, `concurrency_limited`). Transient, unlike 75..81: outside that range on
 * purpose, so Argo's `retryStrategy` expression (`KEYBRAKE_RETRY_EXPRESSION`) retries it.
 */
export const LIMIT_REFUSED_EXIT_CODE = 82;

/** The exit code of a cap hit. */
export const CAP_HIT_EXIT_CODE = KEYBRAKE_EXIT_CODES.cap_exhausted;
/** The lowest exit code of a final Keybrake refusal. */
export const KEYBRAKE_EXIT_CODE_MIN = 75;
/** The highest exit code of a final Keybrake refusal. */
export const KEYBRAKE_EXIT_CODE_MAX = 81;

/**
 * The exit code for an error (or response) that ended a program: the refusal's own code from
 * {@link KEYBRAKE_EXIT_CODES} for a final Keybrake refusal, otherwise `fallback`.
 *
 * @example process.exitCode = exitCodeFor(error) // in a catch around the vendor call
 * @param fallback the code for any other failure. @default 1
 */
export function exitCodeFor(error: unknown, fallback = 1): number {
  const refusal = keybrakeRefusal(error);
  return refusal === undefined ? fallback : KEYBRAKE_EXIT_CODES[refusal];
}

/** The final refusal an exit code stands for, or `undefined`. */
export function refusalForExitCode(code: number): TerminalRefusal | undefined {
  for (const [refusal, value] of Object.entries(KEYBRAKE_EXIT_CODES)) {
    if (value === code) return refusal as TerminalRefusal;
  }
  return undefined;
}
