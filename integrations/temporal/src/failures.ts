import { ApplicationFailure } from '@temporalio/common';
import { keybrakeRefusal, limitRefusal, retryAfterMs } from '@keybrake/client';
import {
  CONCURRENCY_LIMITED_FAILURE,
  RATE_LIMITED_FAILURE,
  VENDOR_RATE_LIMITED_FAILURE,
  refusalFailureType,
} from './constants.js';

function headerOf(error: unknown, name: string): string | undefined {
  const headers = (error as { headers?: unknown }).headers;
  if (!headers || typeof headers !== 'object') return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const value = (headers as Record<string, unknown>)[name];
  return value === undefined ? undefined : String(value);
}

function statusOf(error: unknown): number | undefined {
  const candidate = error as { statusCode?: unknown; status?: unknown };
  const status = candidate.statusCode ?? candidate.status;
  return typeof status === 'number' ? status : undefined;
}

/**
 * Maps what a vendor call threw to what Temporal should do with it:
 * - a Keybrake refusal a retry cannot change becomes a non-retryable `ApplicationFailure` typed
 *   by its code: `KeybrakeCapExhausted`, `KeybrakeTaintedRequestRefused`, `KeybrakeEndpointNotAllowed`,
 *   `KeybrakeVendorMismatch`, `KeybrakeVaultKeyRevoked`, `KeybrakeVaultKeyExpired`, `KeybrakeInvalidVaultKey`;
 * - a refusal by a request or concurrency limit of the key (issue 26) stays retryable, typed
 *   `KeybrakeRateLimited` / `KeybrakeConcurrencyLimited`, with `nextRetryDelay` from its `Retry-After`;
 * - a vendor's own 429 with `Retry-After` stays retryable, with `nextRetryDelay` set to it;
 * - anything else is returned unchanged (Temporal's retry policy decides).
 */
export function toTemporalFailure(error: unknown): unknown {
  if (error instanceof ApplicationFailure) return error;
  const refusal = keybrakeRefusal(error);
  if (refusal !== undefined) {
    const message = error instanceof Error ? error.message : refusal;
    return ApplicationFailure.nonRetryable(
      `Keybrake refused the call (${refusal}): ${message}`,
      refusalFailureType(refusal),
    );
  }
  const limit = limitRefusal(error);
  if (limit !== undefined) {
    const delayMs = retryAfterMs(error) ?? 1000;
    return ApplicationFailure.create({
      message: `Keybrake limit (${limit}): retry after ${delayMs / 1000} s`,
      type: limit === 'rate_limited' ? RATE_LIMITED_FAILURE : CONCURRENCY_LIMITED_FAILURE,
      nonRetryable: false,
      nextRetryDelay: delayMs,
      cause: error instanceof Error ? error : undefined,
    });
  }
  if (statusOf(error) === 429) {
    const retryAfter = Number(headerOf(error, 'retry-after'));
    if (Number.isFinite(retryAfter) && retryAfter >= 0) {
      return ApplicationFailure.create({
        message: `Vendor rate limit: retry after ${retryAfter} s`,
        type: VENDOR_RATE_LIMITED_FAILURE,
        nonRetryable: false,
        nextRetryDelay: retryAfter * 1000,
        cause: error instanceof Error ? error : undefined,
      });
    }
  }
  return error;
}
