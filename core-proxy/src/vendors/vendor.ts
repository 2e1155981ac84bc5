import type { IncomingHttpHeaders } from 'node:http';
import type { EndpointPattern } from '../allowlist.js';
import type { Micros } from '../money.js';
import type { PricingOptions } from '../cost-rules.js';
import { type RequestParams, readRequestParams } from './request-params.js';

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
 * Everything Keybrake knows about one vendor. Adding a vendor is one file implementing this and a
 * line in `vendors/index.ts`.
 */
export interface VendorModule {
  /** Path prefix and `vendor` field value, e.g. `stripe`. */
  readonly name: string;
  /** The vendor's real API host. */
  readonly defaultBaseUrl: string;
  /** Environment variables that must all hold a secret before keys can be issued. */
  readonly secretNames: readonly string[];
  /** Endpoints with a built-in cost rule: money-moving, so sensitive for taint. */
  readonly costedEndpoints: readonly EndpointPattern[];
  /** Reads the vault key from the request, presented the way the vendor's own SDK presents its secret. */
  readVaultKey(headers: IncomingHttpHeaders): string | undefined;
  /**
   * Vendor-specific header rules, checked after the allowlist and taint, before pricing (e.g.
   * Stripe's `Stripe-Account`); throws a `KeybrakeError` to refuse.
   */
  checkHeaders?(request: VendorRequest): void;
  /** Injects the real secret (and rewrites the path where the vendor puts an account id in it). */
  prepareUpstream(request: VendorRequest, secrets: VendorSecrets): UpstreamRequest;
  /**
   * The most this call can cost, in micro-dollars, or `undefined` when the vendor module has no
   * rule for the endpoint. Must be an upper bound for the cap guarantee to hold: read parameters
   * with {@link readParams}, and throw `RequestNotPriceableError` rather than guess.
   */
  estimateCost(request: VendorRequest, pricing: PricingOptions): Micros | undefined;
  /** The real cost, read from the vendor's response once it has answered. */
  settleCost(request: VendorRequest, response: VendorResponse, estimate: Micros, pricing: PricingOptions): Micros;
  /** The vendor's id for this request (Stripe `Request-Id`, Twilio `sid`, Resend `id`). */
  vendorRequestId(response: VendorResponse): string | undefined;
  /** Removes anything of the real secrets from a response body before the client sees it. */
  maskResponseBody?(request: VendorRequest, body: Buffer, secrets: VendorSecrets): Buffer;
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

/** Parses a JSON response body, or `undefined`. */
export function readJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Whether a status is a 2xx. */
export function isSuccess(status: number): boolean {
  return status >= 200 && status < 300;
}
