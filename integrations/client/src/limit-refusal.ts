import { headerValue } from './cap-hit.js';
import { KeybrakeApiError } from './errors.js';
import { ERROR_HEADER } from './refusal.js';

/**
 * Issue 26: the proxy's refusals by a request or concurrency limit of the vault key (or an
 * ancestor's). Unlike a cap hit they are transient: retry after `Retry-After`.
 */
export const LIMIT_REFUSALS = ['rate_limited', 'concurrency_limited'] as const;

export type LimitRefusal = (typeof LIMIT_REFUSALS)[number];

function isLimitCode(code: unknown): code is LimitRefusal {
  return typeof code === 'string' && (LIMIT_REFUSALS as readonly string[]).includes(code);
}

function codeOf(body: unknown): unknown {
  return (body as { error?: { code?: unknown } } | undefined)?.error?.code;
}

/**
 * The limit a response or error was refused by (`rate_limited`, `concurrency_limited`), or
 * `undefined`. Recognises what `keybrakeRefusal` does: this package's `KeybrakeApiError`, fetch
 * `Response`s, the official `stripe` SDK's errors and the `resend` SDK's results, by the proxy's
 * `X-Keybrake-Error` header (a vendor's own 429 never carries it), or by the proxy's error body for
 * a value with no headers at all. A cap hit is never a limit refusal (`isCapHit` stays false).
 */
export function limitRefusal(value: unknown): LimitRefusal | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (value instanceof KeybrakeApiError) return isLimitCode(value.code) ? value.code : undefined;
  if (typeof Response !== 'undefined' && value instanceof Response) {
    const code = value.headers.get(ERROR_HEADER);
    return value.status === 429 && isLimitCode(code) ? code : undefined;
  }
  const candidate = value as { headers?: unknown; code?: unknown; raw?: unknown; error?: unknown };
  if (candidate.headers !== undefined && candidate.headers !== null) {
    const code = headerValue(candidate.headers, ERROR_HEADER);
    return isLimitCode(code) ? code : undefined;
  }
  for (const code of [
    candidate.code,
    codeOf(candidate.raw),
    (candidate.raw as { code?: unknown })?.code,
    codeOf(candidate.error),
  ]) {
    if (isLimitCode(code)) return code;
  }
  return undefined;
}

/** Whether a response or error is a refusal by a request or concurrency limit (see {@link limitRefusal}). */
export function isLimitRefusal(value: unknown): boolean {
  return limitRefusal(value) !== undefined;
}

/**
 * How long to wait before retrying a limit refusal, in ms: its `Retry-After` (whole seconds), else
 * its body's `error.retry_after_s`; `undefined` for anything that is not a limit refusal. Integrations
 * wait at least this long (plus jitter) before the next attempt.
 */
export function retryAfterMs(value: unknown): number | undefined {
  if (!isLimitRefusal(value)) return undefined;
  const candidate = value as { headers?: unknown; retryAfterS?: unknown; raw?: unknown; error?: unknown };
  const header = Number(headerValue(candidate.headers, 'retry-after'));
  if (Number.isFinite(header) && header > 0) return header * 1000;
  for (const seconds of [
    candidate.retryAfterS,
    (candidate.raw as { error?: { retry_after_s?: unknown } } | undefined)?.error?.retry_after_s,
    (candidate.raw as { retry_after_s?: unknown } | undefined)?.retry_after_s,
    (candidate.error as { error?: { retry_after_s?: unknown } } | undefined)?.error?.retry_after_s,
  ]) {
    if (typeof seconds === 'number' && seconds > 0) return seconds * 1000;
  }
  // A limit refusal always says when: 1 s is the smallest it ever says.
  return 1000;
}
