import type { IncomingHttpHeaders } from 'node:http';
import type { KeybrakeError, StoreUnavailableError, UpstreamError } from '../errors.js';
import type { CallPrice, CallSettlement } from '../pricing/price-call.js';
import type { ReserveRoom, StoredResponse, VaultKeyRecord } from '../store/store.js';
import type { ObjectCall } from '../vendors/vendor.js';
import type { ForwardResult } from './forwarder.js';
import type { ClaimedObjectCall } from './object-calls.js';
import type { VendorModule, VendorRequest, VendorResponse, VendorSecrets } from './vendor-seam.js';

/**
 * What is known about one proxied call after each step of the pipeline. Every type is immutable
 * and extends the one before: a step returns new facts, never fills in old ones, so what the
 * audit record says cannot depend on the order of writes.
 */

/** The call as it arrived, before any check. */
export interface ArrivedCall {
  readonly vendor: VendorModule;
  readonly method: string;
  /** The path after `/{vendor}`, as sent (not yet normalized). */
  readonly rawPath: string;
  /** The query string with its leading `?`, or `''`. */
  readonly query: string;
  readonly body: Buffer;
  readonly headers: IncomingHttpHeaders;
  /** The header list exactly as received (`[name, value, ...]`), where a repeated header shows. */
  readonly rawHeaders: readonly string[];
  readonly idempotencyKey: string | null;
  /** `X-Keybrake-Provenance` taints this request. */
  readonly untrusted: boolean;
  /** When the call arrived, epoch ms, from the app clock. */
  readonly at: number;
}

/** Before the first step. */
export interface Arrived {
  readonly call: ArrivedCall;
}

/** `authenticate`: the vault key is known and active (as the possibly cached key record says). */
export interface Authenticated extends Arrived {
  readonly key: VaultKeyRecord;
}

/** `vendor`: the key is for this vendor, and the proxy has the vendor's secret. */
export interface VendorChecked extends Authenticated {
  readonly secrets: VendorSecrets;
  readonly baseUrl: string;
}

/** `allowlist`: the normalized method and path are in the key's `allowed_endpoints`. */
export interface Allowed extends VendorChecked {
  readonly segments: readonly string[];
  /** The request as vendor modules read it (priced, checked, prepared for upstream). */
  readonly vendorRequest: VendorRequest;
  /** The body is compressed: a `_method` in it could not be looked for (refused after pricing). */
  readonly bodyUnreadable: boolean;
}

/** `taint`: a tainted request does not reach a sensitive endpoint. */
export interface TaintChecked extends Allowed {
  /** The endpoint is sensitive (money-moving or steering a money-moving call). */
  readonly sensitive: boolean;
}

/** `price`: the call is read exactly as the vendor will read it, and priced. */
export interface Priced extends TaintChecked {
  /** The reservation and where it comes from; `undefined` for an object call (priced once claimed). */
  readonly price: CallPrice | undefined;
  /** A call priced from the tracked object it acts on (a Stripe PaymentIntent). */
  readonly objectCall: ObjectCall | undefined;
}

/** `reserve`: the price is reserved against the key's caps and its ancestors'. */
export interface Reserved extends Priced {
  readonly price: CallPrice;
  /** The claim on the tracked object, held until the call is settled. */
  readonly claim: ClaimedObjectCall | undefined;
  readonly reservationId: string;
  /** The key or an ancestor is tainted, as the store read it (fresher than a cached key record). */
  readonly keyTainted: boolean;
  /** Issue 26: what the reservation left, for the remaining-room headers. */
  readonly room: ReserveRoom | undefined;
}

/** `forward`: the call was sent upstream (or could not be). */
export interface Forwarded extends Reserved {
  readonly result: ForwardResult;
}

/**
 * What an audit record can be built from: the arrival, and whatever later steps established.
 * Every facts type above is one of these.
 */
export interface AuditFacts extends Arrived {
  readonly key?: VaultKeyRecord;
  readonly segments?: readonly string[];
  readonly keyTainted?: boolean;
  readonly claim?: ClaimedObjectCall | undefined;
  readonly result?: ForwardResult;
}

/** How a call ended: what `answer` turns into the reply (and, for the unsettled ones, the audit record). */
export type Outcome =
  /** The vendor answered; settled and audited (`forwarded`, or `unknown` for a 5xx on a priced call). */
  | {
      readonly kind: 'forwarded';
      readonly facts: Forwarded;
      readonly response: VendorResponse;
      /** The vendor's body, masked of the real secrets. */
      readonly body: Buffer;
      readonly headers: Readonly<Record<string, string | string[]>>;
      readonly settled: CallSettlement;
    }
  /** The vendor call failed (not sent, or no answer); settled and audited. */
  | {
      readonly kind: 'upstream_failed';
      readonly facts: Forwarded;
      readonly error: UpstreamError;
      readonly costMicros: number;
      readonly cause: Error;
    }
  /** A repeat of a finished idempotent call: the stored response. Not yet audited. */
  | { readonly kind: 'replayed'; readonly facts: AuditFacts; readonly stored: StoredResponse }
  /** A check failed; nothing was forwarded. Not yet audited. */
  | { readonly kind: 'refused'; readonly facts: AuditFacts; readonly error: KeybrakeError }
  /** The store failed: nothing to audit into (and, after the vendor call, the outcome is held). */
  | { readonly kind: 'store_failed'; readonly facts: AuditFacts; readonly error: StoreUnavailableError };

/**
 * The facts before the first step, with every field a later step establishes already present (as
 * `undefined`). Each step returns `{ ...facts, ...what it established }`: spreading an object of
 * one fixed shape into the same shape is a flat copy (V8 clones its hidden class), while adding
 * new members at each step built a new shape per step, about 1 µs a spread and 8 µs a call
 * (issue 21). Absent and `undefined` read the same in every step and in the audit record.
 */
export function arrivedFacts(call: ArrivedCall): Arrived {
  const facts: Arrived & { readonly [Field in Exclude<keyof Forwarded, 'call'>]-?: Forwarded[Field] | undefined } = {
    call,
    key: undefined,
    secrets: undefined,
    baseUrl: undefined,
    segments: undefined,
    vendorRequest: undefined,
    bodyUnreadable: undefined,
    sensitive: undefined,
    price: undefined,
    objectCall: undefined,
    claim: undefined,
    reservationId: undefined,
    keyTainted: undefined,
    room: undefined,
    result: undefined,
  };
  return facts;
}

/** A refusal with the facts known when the check failed. */
export function refused(facts: AuditFacts, error: KeybrakeError): Outcome {
  return { kind: 'refused', facts, error };
}
