import type { IncomingHttpHeaders } from 'node:http';
import { type EndpointPattern, matchesRoute, parseEndpointPattern } from '../keys/allowlist.js';
import type { Micros } from '../pricing/money.js';
import type { PricingOptions } from '../pricing/cost-rules.js';
import type { VendorObjectState } from '../store/store.js';
import { type RequestParams, readRequestParams } from './request-params.js';
import type { VendorOptionsSpec } from './vendor-options.js';

export { RequestParams, type RequestParam, type BodyKind } from './request-params.js';

/** A proxied request as a vendor module sees it: already authenticated and allowlisted. */
export interface VendorRequest {
  readonly method: string;
  /** Normalized, decoded path segments as the client sent them (after `/{vendor}`). */
  readonly segments: readonly string[];
  readonly headers: IncomingHttpHeaders;
  /**
   * The header list exactly as received (`[name, value, ...]`), where a repeated header shows.
   * @default none: repeated headers are not checked
   */
  readonly rawHeaders?: readonly string[];
  /** The raw query string without the leading `?` (`''` when there is none). */
  readonly query: string;
  readonly body: Buffer;
}

/** The vendor's answer, fully buffered. */
export interface VendorResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

/** What is sent upstream instead of the client's path and credentials. */
export interface UpstreamRequest {
  readonly segments: readonly string[];
  /** Headers that carry the real secret; they replace any the client sent of the same name. */
  readonly headers: Readonly<Record<string, string>>;
}

/** The real secrets of one vendor, by environment variable name. */
export type VendorSecrets = Readonly<Record<string, string>>;

/**
 * One endpoint that moves money, in its vendor's catalogue. Every catalogued endpoint is
 * sensitive for taint, and none is ever forwarded at $0 by default: it is priced by the vendor
 * module (`estimate`), or refused as `request_not_priceable` until the operator gives it a flat
 * cost rule (`KEYBRAKE_COST_RULES`). Regression: issue 17.
 */
export interface MoneyMovingEndpoint {
  readonly pattern: EndpointPattern;
  /** What the call moves or buys, for the documentation and refusals. */
  readonly moves: string;
  /**
   * The built-in price: the most this call can cost, in micro-dollars. Throws
   * `RequestNotPriceableError` when the request does not bound it. An endpoint with a built-in
   * price takes no flat rule: a flat number cannot bound what the request or the object decides.
   * Absent: no built-in price; a flat rule is the operator's statement of the most one call costs.
   */
  readonly estimate?: (request: VendorRequest, pricing: PricingOptions) => Micros;
  /**
   * What the vendor billed, from its 2xx answer. May exceed the estimate (it is booked as it is).
   * @default the estimate
   */
  readonly settle?: (
    request: VendorRequest,
    response: VendorResponse,
    estimate: Micros,
    pricing: PricingOptions,
  ) => Micros;
}

/**
 * Everything Keybrake knows about one vendor. Adding a vendor is one file implementing this and a
 * line in `BUILT_IN_VENDORS` (`vendors/registry.ts`); or, with no code, an entry of
 * `KEYBRAKE_VENDORS_FILE` (`vendors/declared-vendor.ts`).
 */
export interface VendorModule {
  /** Path prefix and `vendor` field value, e.g. `stripe`. */
  readonly name: string;
  /** The vendor's real API host. */
  readonly defaultBaseUrl: string;
  /** Environment variables that must all hold a secret before keys can be issued. */
  readonly secretNames: readonly string[];
  /**
   * What a test or demo secret of each name starts with, when the vendor (or its mock) checks the
   * shape (`sk_test_` for stripe-mock); the rest is random. @default none: random text only
   */
  readonly testSecretPrefixes?: Readonly<Partial<Record<string, string>>>;
  /**
   * The vendor's own pricing knobs and how they are read from the environment; the catalogue's
   * functions read them with `pricing.vendorOptions.get(spec)`. @default none
   */
  readonly options?: VendorOptionsSpec<unknown>;
  /** Every endpoint of this vendor that moves money: priced, or refused until given a cost rule. */
  readonly catalogue: readonly MoneyMovingEndpoint[];
  /**
   * Endpoints that cost nothing themselves but steer what a money-moving call does later (an
   * amount update, a live call's instructions): refused to tainted requests like the catalogue.
   */
  readonly sensitiveEndpoints: readonly EndpointPattern[];
  /** Reads the vault key from the request, presented the way the vendor's own SDK presents its secret. */
  readVaultKey(headers: IncomingHttpHeaders): string | undefined;
  /**
   * Request headers (lower-case) that carry the vault key besides `Authorization`: never
   * forwarded, so the vendor never sees the key. @default none
   */
  readonly vaultKeyHeaders?: readonly string[];
  /**
   * Vendor-specific header rules, checked after the allowlist and taint, before pricing (e.g.
   * Stripe's `Stripe-Account`); throws a `KeybrakeError` to refuse.
   */
  checkHeaders?(request: VendorRequest): void;
  /** Injects the real secret (and rewrites the path where the vendor puts an account id in it). */
  prepareUpstream(request: VendorRequest, secrets: VendorSecrets): UpstreamRequest;
  /** The vendor's id for this request (Stripe `Request-Id`, Twilio `sid`, Resend `id`). */
  vendorRequestId(response: VendorResponse): string | undefined;
  /** Removes anything of the real secrets from a response body before the client sees it. */
  maskResponseBody?(request: VendorRequest, body: Buffer, secrets: VendorSecrets): Buffer;
  /**
   * The response headers the client sees (those the proxy passes back, see `returnedHeaders`),
   * with anything of the real secrets removed and the vendor's internal headers dropped; also
   * what an idempotent replay returns. @default as they came
   */
  maskResponseHeaders?(
    headers: Readonly<Record<string, string | string[]>>,
    secrets: VendorSecrets,
  ): Record<string, string | string[]>;
  /** Calls priced from the tracked state of the object they act on. @default none */
  readonly objectCalls?: readonly ObjectCall[];
  /** Objects a 2xx answer created, with the spend booked for them. @default none */
  observeObjects?(request: VendorRequest, response: VendorResponse, bookedMicros: Micros): ObservedObject[];
}

/**
 * A call priced from the tracked state of the object it acts on (a Stripe PaymentIntent): the
 * proxy claims the object for the call (no two such calls on one object in flight at once), prices
 * the call from the object's amount, and records the object's state from the vendor's answer.
 * Regression: issue 17 (an amount raised by an update, then confirmed, moved $5,000 under $1).
 */
export interface ObjectCall {
  readonly pattern: EndpointPattern;
  /** The object the call acts on (a path segment or a parameter), or `undefined` if it names none. */
  objectId(request: VendorRequest): string | undefined;
  /** Whether the call can be priced only from a tracked state (a confirm), or also without (an update). */
  readonly needsState: boolean;
  /** The most the call can cost, given the object's state (`null`: not tracked, only when `!needsState`). */
  estimate(request: VendorRequest, state: VendorObjectState | null, pricing: PricingOptions): Micros;
  /**
   * What a 2xx answer booked, and the object's state after it (`undefined`: unchanged, `null`:
   * no longer known).
   */
  settle(
    request: VendorRequest,
    response: VendorResponse,
    state: VendorObjectState | null,
    pricing: PricingOptions,
    estimate: Micros,
  ): { readonly micros: Micros; readonly state: VendorObjectState | null | undefined };
  /** The object's state after an unknown outcome (the reservation was booked as unknown spend). */
  unknown(state: VendorObjectState | null, reservedMicros: Micros): VendorObjectState | null | undefined;
  /** Reads the object with the real secret, for an operator who opts in to read-before-write. */
  readonly read: {
    readonly segments: (objectId: string) => string[];
    readonly state: (response: VendorResponse) => Omit<VendorObjectState, 'bookedMicros'> | undefined;
  };
}

/** An object a vendor's answer created, to track for the calls that later move its amount. */
export interface ObservedObject {
  readonly objectId: string;
  readonly state: VendorObjectState;
}

/** Builds a catalogue entry from its `"METHOD /path"` text. */
export function moneyMoving(
  endpoint: string,
  moves: string,
  pricing: Pick<MoneyMovingEndpoint, 'estimate' | 'settle'> = {},
): MoneyMovingEndpoint {
  return { pattern: parseEndpointPattern(endpoint), moves, ...pricing };
}

/** The object call a request is, if it is one. */
export function findObjectCall(
  vendor: VendorModule,
  method: string,
  segments: readonly string[],
): ObjectCall | undefined {
  return vendor.objectCalls?.find((call) => matchesRoute(call.pattern, method, segments));
}

/** The catalogue entry a call matches, if it moves money. */
export function findMoneyMoving(
  vendor: VendorModule,
  method: string,
  segments: readonly string[],
): MoneyMovingEndpoint | undefined {
  return vendor.catalogue.find((entry) => matchesRoute(entry.pattern, method, segments));
}

/** Reads `Authorization: Bearer <token>`. */
export function readBearer(headers: IncomingHttpHeaders): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(headers.authorization ?? '');
  return match?.[1];
}

/** Reads `Authorization: Basic` as `[username, password]`. */
export function readBasic(headers: IncomingHttpHeaders): [string, string] | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(headers.authorization ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1] as string, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

/**
 * The parameters the vendor will read (query string and body), read strictly. Use `one`,
 * `integer` or `all` for priced parameters: they refuse duplicates and ambiguous spellings.
 * @throws RequestNotPriceableError (400 `request_not_priceable`) when the body cannot be read
 *   with certainty (unknown media type, multipart, compressed, not UTF-8, a repeated JSON key...).
 */
export function readParams(request: VendorRequest): RequestParams {
  return readRequestParams(request);
}

/** Response bodies already parsed: settlement, object tracking and the request id each read the same answer. */
const parsedBodies = new WeakMap<Buffer, unknown>();

/** Parses a JSON response body, or `undefined`. Parsed once per body: treat the result as read-only. */
export function readJson(body: Buffer): unknown {
  if (parsedBodies.has(body)) return parsedBodies.get(body);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    parsed = undefined;
  }
  parsedBodies.set(body, parsed);
  return parsed;
}

/** Whether a status is a 2xx. */
export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
