import { headerValue, isCapHit } from './cap-hit.js';
import { KeybrakeApiError } from './errors.js';

/** The header the proxy sets on its own refusals and errors, with the `error.code` (never on a vendor's). */
export const ERROR_HEADER = 'x-keybrake-error';

/**
 * Refusals a retry cannot change: the same call with the same key meets the same answer. Workflow
 * integrations turn them into terminal, never-retried failures.
 */
export const TERMINAL_REFUSALS = [
  'cap_exhausted',
  'tainted_request_refused',
  'endpoint_not_allowed',
  'vendor_mismatch',
  'vault_key_revoked',
  'vault_key_expired',
  'invalid_vault_key',
] as const;

export type TerminalRefusal = (typeof TERMINAL_REFUSALS)[number];

function isTerminal(code: unknown): code is TerminalRefusal {
  return typeof code === 'string' && (TERMINAL_REFUSALS as readonly string[]).includes(code);
}

function codeOf(body: unknown): unknown {
  return (body as { error?: { code?: unknown } } | undefined)?.error?.code;
}

/**
 * The code of a Keybrake refusal that retrying cannot change (see {@link TERMINAL_REFUSALS}), or
 * `undefined` for anything else (a vendor's own error, a network failure, a 503 the store will
 * recover from). Recognises what {@link isCapHit} does, and errors carrying the proxy's
 * `X-Keybrake-Error` header (or, for a value with no headers at all, its error body): this package's `KeybrakeApiError`, fetch `Response`s,
 * the official `stripe` SDK's errors and the `resend` SDK's results.
 */
export function keybrakeRefusal(value: unknown): TerminalRefusal | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  if (isCapHit(value)) return 'cap_exhausted';
  if (value instanceof KeybrakeApiError) return isTerminal(value.code) ? value.code : undefined;
  const candidate = value as { headers?: unknown; code?: unknown; raw?: unknown; error?: unknown };
  if (candidate.headers !== undefined && candidate.headers !== null) {
    // The header decides, as for a cap hit: a vendor's own body can carry the same code.
    const fromHeader = headerValue(candidate.headers, ERROR_HEADER);
    return fromHeader !== undefined && isTerminal(fromHeader) ? fromHeader : undefined;
  }
  // No headers at all (Resend's bare `error`): our body. Stripe: `code` is our error.code, `raw`
  // the parsed error; Resend: `error` is the parsed body.
  for (const code of [
    candidate.code,
    codeOf(candidate.raw),
    (candidate.raw as { code?: unknown })?.code,
    codeOf(candidate.error),
  ]) {
    if (isTerminal(code)) return code;
  }
  return undefined;
}
