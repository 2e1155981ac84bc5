import type { IRetryStrategy } from '@kubernetes-models/argo-workflows/argoproj.io/v1alpha1/RetryStrategy';
import { KEYBRAKE_EXIT_CODE_MAX, KEYBRAKE_EXIT_CODE_MIN } from '@keybrake/client';

/**
 * Retry unless the last attempt exited with a final Keybrake refusal (75 cap hit ... 81, see
 * `KEYBRAKE_EXIT_CODES`). `lastRetry.exitCode` is a string in Argo, hence `asInt`. A node with no
 * exit code (an Error before the container ran, an `http` node) has `"-1"`: retried.
 */
export const KEYBRAKE_RETRY_EXPRESSION = `asInt(lastRetry.exitCode) < ${KEYBRAKE_EXIT_CODE_MIN} || asInt(lastRetry.exitCode) > ${KEYBRAKE_EXIT_CODE_MAX}`;

/** Options of {@link keybrakeRetryStrategy}. */
export interface KeybrakeRetryOptions {
  /** Retries after the first attempt. @default 3 */
  readonly limit?: number;
  /** First backoff. @default '5s' */
  readonly backoff?: string;
}

/**
 * The `retryStrategy` of a step that calls vendors through Keybrake: a cap hit (exit 75) or any
 * other final refusal is never retried; everything else is, with backoff.
 *
 * `retryPolicy: Always`, on purpose: the expression decides for failed attempts (non-zero exit),
 * and errored attempts (pod evicted, node lost: the charge may or may not have been sent) are
 * retried too. That is safe because the step's idempotency key survives retries, so a charge that
 * went through is replayed by the proxy, not made twice. (`OnFailure` would leave those errors
 * unretried; with an expression and no policy Argo ≥ 3.5 also means `Always`, written out here so
 * that the policy and the expression are read together.)
 */
export function keybrakeRetryStrategy(options: KeybrakeRetryOptions = {}): IRetryStrategy {
  return {
    limit: options.limit ?? 3,
    retryPolicy: 'Always',
    expression: KEYBRAKE_RETRY_EXPRESSION,
    backoff: { duration: options.backoff ?? '5s', factor: 2, maxDuration: '5m' },
  };
}
