import { KeybrakeApiError } from './errors.js';

/** The header the proxy sets on its own cap-hit 429 (a vendor's own 429 never carries it). */
export const CAP_HIT_HEADER = 'x-keybrake-cap-hit';

/** A header of a fetch `Headers`, a Node headers object or a plain record, by lower-case name. */
export function headerValue(headers: unknown, name: string): string | undefined {
  if (!headers || typeof headers !== 'object') return undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  }
  for (const [key, value] of Object.entries(headers as Record<string, unknown>)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? String(value[0]) : String(value);
  }
  return undefined;
}

function errorCode(body: unknown): unknown {
  return (body as { error?: { code?: unknown } } | undefined)?.error?.code;
}

/**
 * Whether a response or error is Keybrake's cap hit, as opposed to any other failure (a vendor's
 * own 429 included). Recognises:
 * - a fetch `Response` (status 429 with `X-Keybrake-Cap-Hit: true`);
 * - this package's `CapExhaustedError` and any `KeybrakeApiError` with code `cap_exhausted`;
 * - errors of the official `stripe` SDK (by the header they carry: a body code alone is not enough);
 * - the `{ data, error, headers }` result of the official `resend` SDK (by its headers), and its
 *   bare `error`, which has none (by the proxy's error body);
 * - errors of the official `twilio` SDK made through `twilioOptions` (which throws `CapExhaustedError`).
 */
export function isCapHit(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (value instanceof KeybrakeApiError) return value.code === 'cap_exhausted';
  if (typeof Response !== 'undefined' && value instanceof Response) {
    return value.status === 429 && value.headers.get(CAP_HIT_HEADER) === 'true';
  }
  const candidate = value as {
    statusCode?: unknown;
    status?: unknown;
    headers?: unknown;
    code?: unknown;
    raw?: unknown;
    error?: unknown;
  };
  // The header decides (the contract): a vendor's own 429 body can say cap_exhausted too. Stripe
  // errors and Resend's `{ data, error, headers }` result carry the response's headers.
  if (candidate.headers !== undefined && candidate.headers !== null) {
    return headerValue(candidate.headers, CAP_HIT_HEADER) === 'true';
  }
  // Only a value without any headers falls back to our body: Resend's `error` on its own (the SDK
  // returns the headers beside it; pass the whole result to be judged by them).
  if (errorCode(candidate.raw) === 'cap_exhausted' || errorCode(candidate.error) === 'cap_exhausted') return true;
  return errorCode(candidate) === 'cap_exhausted';
}
