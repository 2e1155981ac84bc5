/**
 * Typed errors of the core proxy. Every HTTP error the proxy (admin API and vendor proxy alike)
 * returns is one of these; its `code` is the binding `error.code` of the wire contract
 * (`shared/CONTRACT.md`), and {@link ERROR_TABLE} gives each code its one status and its one
 * message. A refusal's context (the vendor, the key, the path) is a readonly field of its class,
 * and adds detail to the message only where it helps the caller.
 */

/** One row of {@link ERROR_TABLE}. */
export interface ErrorSpec {
  /** The HTTP status, the same wherever the code is answered. */
  readonly status: number;
  /** The message, when the error's context adds no detail. */
  readonly message: string;
}

/**
 * Every error code Keybrake answers with: code → status → message. The contract fixes the status
 * of the codes it names; the others are ours, documented in OpenAPI. A test checks this table
 * against the contract's error list and against every code OpenAPI documents.
 */
export const ERROR_TABLE = {
  // Admin API and shared.
  unauthorized: { status: 401, message: 'A valid issuer key is required: Authorization: Bearer <key>.' },
  invalid_request: { status: 400, message: 'The request does not match the API.' },
  /**
   * 400 at issuance and on the proxy (issue 16): no retry can succeed until an operator
   * configures the secret, and a 5xx would invite every vendor SDK's automatic retries.
   */
  vendor_not_configured: {
    status: 400,
    message: 'No secret is configured for this vendor on this proxy: its vault keys can be neither issued nor used.',
  },
  key_depth_exceeded: { status: 400, message: 'A vault key may have at most MAX_KEY_DEPTH ancestors.' },
  not_found: { status: 404, message: 'Nothing exists at this path.' },
  method_not_allowed: { status: 405, message: 'This path does not accept this method.' },
  payload_too_large: { status: 413, message: 'The request body is too large.' },
  unsupported_media_type: { status: 415, message: 'The request body has a media type this endpoint does not accept.' },
  headers_too_large: { status: 431, message: 'Request headers exceed 16 KiB.' },
  request_timeout: { status: 408, message: 'The request was not received in time; nothing was forwarded.' },
  store_unavailable: { status: 503, message: 'The store cannot be reached; nothing was forwarded or changed.' },
  shutting_down: { status: 503, message: 'The proxy is shutting down.' },
  internal_error: { status: 500, message: 'Internal error.' },

  // Issue 25: `Authorization: Bearer <JWT>` on the admin API (workload identity).
  token_invalid: { status: 401, message: 'The bearer token is not a well-formed signed JWT.' },
  token_too_large: { status: 401, message: 'The bearer token is larger than KEYBRAKE_MAX_TOKEN_BYTES.' },
  token_algorithm: {
    status: 401,
    message: "The token's algorithm is not one its issuer allows (none and HMAC are never accepted).",
  },
  token_duplicate_claim: { status: 401, message: 'The token names a claim or header parameter twice.' },
  token_expired: { status: 401, message: 'The token has expired.' },
  token_not_yet_valid: { status: 401, message: 'The token is not valid yet (nbf or iat in the future).' },
  token_issuer: { status: 401, message: "The token's issuer (iss) is not a trusted issuer." },
  token_audience: { status: 401, message: "The token's audience (aud) is not one its issuer accepts." },
  token_unknown_key: { status: 401, message: "The token's key (kid) is not in its issuer's JWKS." },
  token_signature: { status: 401, message: "The token's signature does not verify." },
  issuer_unavailable: {
    status: 503,
    message: "The token issuer's keys could not be fetched; nothing was issued or changed.",
  },
  policy_no_match: { status: 403, message: 'No policy of the issuers file matches this identity.' },
  policy_vendor: { status: 403, message: "This vendor is not in the identity's policy; nothing was issued." },
  policy_cap: { status: 403, message: "The caps are beyond the identity's policy; nothing was issued." },
  policy_ttl: { status: 403, message: "The requested expires_in is beyond the identity's policy; nothing was issued." },
  policy_endpoints: {
    status: 403,
    message: "The requested allowed_endpoints are not within the identity's policy ceiling; nothing was issued.",
  },
  policy_label: {
    status: 403,
    message: "The agent_run_label is not a canonical label under the identity's policy prefix; nothing was issued.",
  },
  policy_not_own_key: {
    status: 403,
    message: "This key was not issued to this identity, and its policy does not allow others' keys.",
  },
  policy_operator_only: { status: 403, message: 'This admin route needs an issuer key, not a workload token.' },

  // The proxy's checks, in the contract's order.
  invalid_vault_key: { status: 401, message: 'No vault key was presented, or it is not known.' },
  vault_key_revoked: { status: 401, message: 'The vault key has been revoked.' },
  vault_key_expired: { status: 401, message: 'The vault key has expired.' },
  vendor_mismatch: { status: 403, message: 'This vault key was issued for another vendor.' },
  endpoint_not_allowed: { status: 403, message: "This call is not in the vault key's allowed_endpoints." },
  tainted_request_refused: {
    status: 403,
    message:
      'A tainted request (a tainted key, or X-Keybrake-Provenance other than trusted) may not call a sensitive endpoint; nothing was forwarded.',
  },
  request_not_priceable: { status: 400, message: 'The call was not priced, so nothing was forwarded.' },
  currency_not_supported: {
    status: 400,
    message: 'This currency has no configured USD rate (set KEYBRAKE_FX_RATES, e.g. eur=1.08).',
  },
  object_in_use: { status: 409, message: 'Another call on this object is in flight; retry once it has finished.' },
  idempotency_key_reused: {
    status: 400,
    message: 'This Idempotency-Key was used with a different method, path or body.',
  },
  idempotency_key_in_use: { status: 409, message: 'A request with this Idempotency-Key is still in flight.' },
  cap_exhausted: { status: 429, message: 'This call would take spend past the vault key cap; nothing was forwarded.' },
  /** Issue 26: transient, unlike a cap hit: retry after `Retry-After` seconds. */
  rate_limited: {
    status: 429,
    message:
      "This call would exceed the vault key's requests per second or per minute (own or an ancestor's); nothing was forwarded. Retry after Retry-After seconds.",
  },
  concurrency_limited: {
    status: 429,
    message:
      "This call would exceed the vault key's max_concurrent calls in flight (own or an ancestor's); nothing was forwarded. Retry after Retry-After seconds.",
  },

  // The vendor call itself.
  upstream_unreachable: { status: 502, message: 'The vendor could not be reached; nothing was sent.' },
  upstream_error: { status: 502, message: 'The vendor call may have been made, but no answer came back.' },
  upstream_timeout: { status: 504, message: 'The vendor call may have been made, but no answer came back in time.' },
} as const satisfies Readonly<Record<string, ErrorSpec>>;

/** Stable error codes: the wire contract's, plus the few it leaves to us (see {@link ERROR_TABLE}). */
export type ErrorCode = keyof typeof ERROR_TABLE;

/** The contract's error body: `{"error": {"code", "message"}}`. */
export interface ErrorBody {
  readonly error: { readonly code: ErrorCode; readonly message: string };
}

/** Base class: an error with a stable contract code; its status comes from {@link ERROR_TABLE}. */
export class KeybrakeError extends Error {
  /** The code's one HTTP status. */
  readonly statusCode: number;

  /**
   * @param message what the context adds; @default the table's message for `code`
   * @param headers response headers the error carries (the cap-hit header)
   */
  constructor(
    readonly code: ErrorCode,
    message: string = ERROR_TABLE[code].message,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = new.target.name;
    this.statusCode = ERROR_TABLE[code].status;
  }

  /** The contract's error body: `{"error": {"code", "message"}}`. */
  toJSON(): ErrorBody {
    return { error: { code: this.code, message: this.message } };
  }
}

/** Issue 25: a bearer JWT refused (401), or its issuer's keys out of reach (503). */
export class TokenRefusedError extends KeybrakeError {
  constructor(code: Extract<ErrorCode, `token_${string}`> | 'issuer_unavailable', message?: string) {
    super(code, message);
  }
}

/** Issue 25: a request from a workload identity beyond its policy (403); nothing was changed. */
export class PolicyRefusedError extends KeybrakeError {
  constructor(code: Extract<ErrorCode, `policy_${string}`>, message?: string) {
    super(code, message);
  }
}

/** No issuer key, or one not in `KEYBRAKE_API_KEYS` (admin API). */
export class UnauthorizedError extends KeybrakeError {
  constructor() {
    super('unauthorized');
  }
}

/** A request body, header or parameter that does not match the API. */
export class InvalidRequestError extends KeybrakeError {
  constructor(message: string) {
    super('invalid_request', message);
  }
}

/** Nothing is routed at the path, or no vault key has the id (admin API). */
export class NotFoundError extends KeybrakeError {
  constructor(message: string = ERROR_TABLE.not_found.message) {
    super('not_found', message);
  }
}

/** The path is routed, not for this method. `allow` lists the methods it accepts. */
export class MethodNotAllowedError extends KeybrakeError {
  constructor(
    readonly path: string,
    readonly method: string,
    readonly allow: readonly string[],
  ) {
    super('method_not_allowed', `${path} does not accept ${method}.`, { allow: allow.join(', ') });
  }
}

/** A body with a media type or encoding the endpoint does not take. */
export class UnsupportedMediaTypeError extends KeybrakeError {
  constructor(message: string = ERROR_TABLE.unsupported_media_type.message) {
    super('unsupported_media_type', message);
  }
}

/**
 * The vendor has no secret on this proxy: at issuance, and on the proxy for a key issued before a
 * restart without it. Regression: issue 16 (it was 503 on the proxy). 400 on both.
 */
export class VendorNotConfiguredError extends KeybrakeError {
  constructor(readonly vendor: string) {
    super(
      'vendor_not_configured',
      `No secret is configured for ${vendor} on this proxy: its vault keys can be neither issued nor used.`,
    );
  }
}

/**
 * A key with more ancestors than `MAX_KEY_DEPTH`: refused at issuance, and, for a chain written
 * before the limit existed, refused on the proxy (its caps could not all be checked).
 */
export class KeyDepthExceededError extends KeybrakeError {
  constructor(readonly maxDepth: number) {
    super('key_depth_exceeded', `A vault key may have at most ${maxDepth} ancestors; this chain of keys is deeper.`);
  }
}

/** No vault key presented, or one the store does not know. */
export class InvalidVaultKeyError extends KeybrakeError {
  constructor(readonly presented: boolean) {
    super('invalid_vault_key', presented ? 'The vault key is not known.' : 'No vault key was presented.');
  }
}

/** The vault key (or an ancestor) was revoked. */
export class VaultKeyRevokedError extends KeybrakeError {
  constructor(readonly keyId: string) {
    super('vault_key_revoked');
  }
}

/** The vault key is past its `expires_at`. */
export class VaultKeyExpiredError extends KeybrakeError {
  constructor(readonly keyId: string) {
    super('vault_key_expired');
  }
}

/** The key was issued for another vendor than the one the path names. */
export class VendorMismatchError extends KeybrakeError {
  constructor(
    readonly keyVendor: string,
    readonly vendor: string,
  ) {
    super('vendor_mismatch', `This vault key was issued for ${keyVendor}, not ${vendor}.`);
  }
}

/**
 * The method and path are not in the key's `allowed_endpoints`, or the request tries to change
 * them past the check (a method override, a vendor header acting elsewhere): `why` says which.
 */
export class EndpointNotAllowedError extends KeybrakeError {
  constructor(
    readonly method: string,
    readonly path: string,
    why: string = `${method} ${path} is not in this key's allowed_endpoints.`,
  ) {
    super('endpoint_not_allowed', why);
  }
}

/** A tainted request (key, ancestor or provenance header) to a sensitive endpoint. */
export class TaintedRequestRefusedError extends KeybrakeError {
  constructor() {
    super('tainted_request_refused');
  }
}

/**
 * A call to a costed endpoint whose cost cannot be determined with certainty: a body the proxy
 * cannot parse or decode, a priced parameter where it does not read it, an ambiguous duplicate.
 * Refused after the allowlist and taint checks, before the cap; nothing is forwarded. Also a
 * money-moving endpoint with no price (issue 17: catalogued endpoints were forwarded at $0).
 */
export class RequestNotPriceableError extends KeybrakeError {
  constructor(readonly why: string) {
    super('request_not_priceable', `${why} ${ERROR_TABLE.request_not_priceable.message}`);
  }
}

/** A priced amount in a currency with no configured USD rate. */
export class CurrencyNotSupportedError extends KeybrakeError {
  /** @param currency the currency code as sent, shown only when it looks like one */
  constructor(readonly currency: string) {
    const shown = /^[a-z]{3}$/.test(currency) ? `"${currency}"` : 'this currency';
    super(
      'currency_not_supported',
      `Currency ${shown} has no configured USD rate (set KEYBRAKE_FX_RATES, e.g. eur=1.08).`,
    );
  }
}

/** Another call on the same tracked object (a Stripe PaymentIntent) is in flight. */
export class ObjectInUseError extends KeybrakeError {
  constructor(readonly objectId: string) {
    super('object_in_use');
  }
}

/** The Idempotency-Key was used with another method, path or body. */
export class IdempotencyKeyReusedError extends KeybrakeError {
  constructor() {
    super('idempotency_key_reused');
  }
}

/** The first call with this Idempotency-Key has not finished. */
export class IdempotencyKeyInUseError extends KeybrakeError {
  constructor() {
    super('idempotency_key_in_use');
  }
}

/** The call's cost would take spend past the key's cap, or an ancestor's. */
export class CapExhaustedError extends KeybrakeError {
  constructor(readonly capKeyId: string) {
    super('cap_exhausted', ERROR_TABLE.cap_exhausted.message, {
      'x-keybrake-cap-hit': 'true',
      // The Stripe SDK honours this: a cap hit is never worth a retry.
      'stripe-should-retry': 'false',
    });
  }
}

/**
 * Issue 26: a request or concurrency limit of the key or an ancestor refused the call. A 429 like
 * a cap hit, but transient: `Retry-After` and `retry_after_s` say when to retry, it never carries
 * `X-Keybrake-Cap-Hit`, and the Stripe SDK is told to retry it.
 */
export class LimitRefusalError extends KeybrakeError {
  constructor(
    code: 'rate_limited' | 'concurrency_limited',
    /** Whole seconds to wait, at least 1. */
    readonly retryAfterS: number,
  ) {
    super(code, ERROR_TABLE[code].message, {
      'retry-after': String(retryAfterS),
      'stripe-should-retry': 'true',
    });
  }

  override toJSON(): ErrorBody & { readonly error: { readonly retry_after_s: number } } {
    return { error: { code: this.code, message: this.message, retry_after_s: this.retryAfterS } };
  }
}

/** The store (embedded SQLite or Redis) cannot be reached: money paths fail closed on this. */
export class StoreUnavailableError extends KeybrakeError {
  constructor(
    override readonly cause?: unknown,
    message: string = ERROR_TABLE.store_unavailable.message,
  ) {
    super('store_unavailable', message);
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

/**
 * The vendor call failed: not sent (`upstream_unreachable`, nothing can have been charged), or
 * sent with no answer (`upstream_error`, `upstream_timeout`: the outcome is unknown).
 */
export class UpstreamError extends KeybrakeError {
  constructor(
    readonly vendor: string,
    code: 'upstream_unreachable' | 'upstream_error' | 'upstream_timeout',
  ) {
    super(code);
  }
}

/** The error body for a code with its table message: for replies built outside fastify. */
export function errorBody(code: ErrorCode): ErrorBody {
  return { error: { code, message: ERROR_TABLE[code].message } };
}
