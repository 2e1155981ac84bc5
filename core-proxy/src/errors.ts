/**
 * Typed errors of the core proxy. Every HTTP error the proxy returns is one of these, and its
 * `code` is the binding `error.code` of the wire contract (`shared/CONTRACT.md`).
 */

/** Stable error codes of the wire contract, plus the few the contract leaves to us. */
export type ErrorCode =
  | 'unauthorized'
  | 'invalid_request'
  | 'vendor_not_configured'
  | 'key_depth_exceeded'
  | 'not_found'
  | 'invalid_vault_key'
  | 'vault_key_revoked'
  | 'vault_key_expired'
  | 'vendor_mismatch'
  | 'endpoint_not_allowed'
  | 'tainted_request_refused'
  | 'cap_exhausted'
  | 'currency_not_supported'
  | 'request_not_priceable'
  | 'object_in_use'
  | 'request_timeout'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_use'
  | 'store_unavailable'
  | 'payload_too_large'
  | 'headers_too_large'
  | 'unsupported_media_type'
  | 'method_not_allowed'
  | 'upstream_unreachable'
  | 'upstream_timeout'
  | 'upstream_error'
  | 'shutting_down'
  | 'internal_error';

/** Base class: an error with an HTTP status and a stable contract code. */
export class KeybrakeError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }

  /** The contract's error body: `{"error": {"code", "message"}}`. */
  toJSON(): { error: { code: ErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/** A request body, header or parameter that does not match the API. */
export class InvalidRequestError extends KeybrakeError {
  constructor(message: string) {
    super(400, 'invalid_request', message);
  }
}

/**
 * A key with more ancestors than `MAX_KEY_DEPTH`: refused at issuance, and, for a chain written
 * before the limit existed, refused on the proxy (its caps could not all be checked).
 */
export class KeyDepthExceededError extends KeybrakeError {
  constructor(
    readonly maxDepth: number,
    message = `A vault key may have at most ${maxDepth} ancestors; this parent_key_id would make it deeper.`,
  ) {
    super(400, 'key_depth_exceeded', message);
  }
}

/**
 * A call to a costed endpoint whose cost cannot be determined with certainty: a body the proxy
 * cannot parse or decode, a priced parameter where it does not read it, an ambiguous duplicate.
 * Refused after the allowlist and taint checks, before the cap; nothing is forwarded. Also a
 * money-moving endpoint with no price (issue 17: catalogued endpoints were forwarded at $0).
 */
export class RequestNotPriceableError extends KeybrakeError {
  constructor(message: string) {
    super(400, 'request_not_priceable', `${message} The call was not priced, so nothing was forwarded.`);
  }
}

/** The store (embedded SQLite or Redis) cannot be reached: money paths fail closed on this. */
export class StoreUnavailableError extends KeybrakeError {
  constructor(
    override readonly cause?: unknown,
    message = 'The spend store cannot be reached; nothing was forwarded.',
  ) {
    super(503, 'store_unavailable', message);
  }
}

/**
 * The vendor was called, then the store failed while recording the outcome. Still
 * `store_unavailable`, but the message must not say nothing happened: the reservation stays,
 * and becomes unknown spend (swept on Redis, recovered at start on the embedded store).
 */
export class OutcomeNotRecordedError extends StoreUnavailableError {
  constructor(cause?: unknown) {
    super(
      cause,
      'The vendor was called, but the store could not record the outcome yet: the call stays reserved against the cap, and its outcome is recorded once the store is back (if this proxy stops first, it is counted as unknown spend). Retry only with the same Idempotency-Key.',
    );
  }
}

/** The call's cost would take spend past the key's cap, or a parent's. */
export class CapExhaustedError extends KeybrakeError {
  constructor(readonly capKeyId: string) {
    super(429, 'cap_exhausted', 'This call would take spend past the vault key cap; nothing was forwarded.', {
      'x-keybrake-cap-hit': 'true',
      // The Stripe SDK honours this: a cap hit is never worth a retry.
      'stripe-should-retry': 'false',
    });
  }
}

/** Shorthand for the errors that only need a status, a code and a message. */
export function httpError(statusCode: number, code: ErrorCode, message: string): KeybrakeError {
  return new KeybrakeError(statusCode, code, message);
}
