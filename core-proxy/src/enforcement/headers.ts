/**
 * Header policy of the proxy: what the client's headers say about a call (provenance, method
 * overrides, `Connection`), what is forwarded upstream, and what is passed back.
 */
import type { ReserveRoom } from '../store/store.js';
import type { IncomingHttpHeaders } from 'node:http';
import { METHOD_OVERRIDE_HEADERS } from '../keys/allowlist.js';
import { countHeader } from '../vendors/request-params.js';
import type { VendorResponse } from './vendor-seam.js';

/** Request headers never forwarded: hop-by-hop, credentials we replace, routing overrides, and our own. */
const DROPPED_REQUEST_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  // Regression: issue 16. Only meaningful on the client's own hop (an h2c upgrade).
  'http2-settings',
  'authorization',
  'content-length',
  'accept-encoding',
  'expect',
  ...METHOD_OVERRIDE_HEADERS,
  // Routing and rewrite headers: a vendor's gateway that honours one would route the call
  // somewhere other than the path the allowlist checked.
  'x-original-url',
  'x-rewrite-url',
  'x-original-method',
  'x-forwarded-host',
  'x-forwarded-prefix',
  'x-forwarded-proto',
  'x-forwarded-port',
  'x-forwarded-server',
  'x-forwarded-for',
  'x-host',
  'x-real-ip',
  'forwarded',
]);

/** Response headers not passed back: hop-by-hop ones, and the length we recompute. */
const DROPPED_RESPONSE_HEADERS = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);

/** Headers the vendor must see as priced and checked: `Connection` may not make them hop-by-hop. */
export const END_TO_END_HEADERS = ['content-type', 'content-encoding', 'idempotency-key'] as const;

/**
 * Whether `X-Keybrake-Provenance` taints the request. It fails closed: only its absence or exactly
 * one header saying `trusted` leaves a request untainted; `untrusted`, `untrusted; src=email`,
 * two headers (joined as `untrusted, untrusted`), an empty value or anything else taints it.
 * Regression: issue 16.
 */
export function isUntrusted(headers: IncomingHttpHeaders, rawHeaders: readonly string[]): boolean {
  const value = headers['x-keybrake-provenance'];
  if (value === undefined) return false;
  return countHeader(rawHeaders, 'x-keybrake-provenance') !== 1 || String(value).trim().toLowerCase() !== 'trusted';
}

/** True when a method-override header names a method other than the real one. */
export function overriddenMethod(headers: IncomingHttpHeaders, method: string): boolean {
  for (const name of METHOD_OVERRIDE_HEADERS) {
    const value = headers[name];
    if (value !== undefined && String(value).trim().toUpperCase() !== method) return true;
  }
  return false;
}

const NO_NAMES: ReadonlySet<string> = new Set();
const KEEP_ALIVE: ReadonlySet<string> = new Set(['keep-alive']);
const CLOSE: ReadonlySet<string> = new Set(['close']);

/** Header names the client's `Connection` header lists: hop-by-hop for that hop only (RFC 9110 7.6.1). */
export function connectionNamed(headers: IncomingHttpHeaders): ReadonlySet<string> {
  // Most clients send nothing, `keep-alive` or `close`: the same answer without building it.
  const connection = headers.connection;
  if (connection === undefined) return NO_NAMES;
  if (connection === 'keep-alive') return KEEP_ALIVE;
  if (connection === 'close') return CLOSE;
  return new Set(
    String(headers.connection ?? '')
      .split(',')
      .map((name) => name.trim().toLowerCase())
      .filter(Boolean),
  );
}

/** The client's headers that go upstream (the vendor module then adds the real secret). */
export function forwardedHeaders(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  // Regression: issue 16. Headers named in `Connection` were forwarded (`Connection: close, X-Foo`).
  const named = connectionNamed(headers);
  const forwarded: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || DROPPED_REQUEST_HEADERS.has(name) || named.has(name) || name.startsWith('x-keybrake-'))
      continue;
    forwarded[name] = value;
  }
  return forwarded;
}

/** The vendor's headers that go back to the client. */
export function returnedHeaders(response: VendorResponse): Record<string, string | string[]> {
  const returned: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(response.headers)) {
    if (value === undefined || DROPPED_RESPONSE_HEADERS.has(name) || name.startsWith('x-keybrake-')) continue;
    returned[name] = value;
  }
  return returned;
}

/**
 * Issue 26: the remaining-room headers of a call that reserved, after its reservation:
 * `X-Keybrake-Remaining-Usd` (USD left under the tightest cap, own or any ancestor's, lifetime or
 * daily, as a decimal with exactly 6 places: the micro-dollars the store counts, never rounded up),
 * `X-Keybrake-Requests-Remaining` (calls left in the tightest request window; absent when no key
 * of the family has a rate limit), `X-Keybrake-Concurrent-Remaining` (calls that may still start
 * while this one is in flight; absent without a concurrency limit).
 */
export function roomHeaders(room: ReserveRoom): Record<string, string> {
  const headers: Record<string, string> = {
    'x-keybrake-remaining-usd': formatMicrosUsd(room.remainingMicros),
  };
  if (room.requests !== null) headers['x-keybrake-requests-remaining'] = String(Math.max(0, room.requests));
  if (room.concurrent !== null) headers['x-keybrake-concurrent-remaining'] = String(Math.max(0, room.concurrent));
  return headers;
}

/** Integer micro-dollars as a USD decimal with 6 places (`12.500000`), exact. */
export function formatMicrosUsd(micros: number): string {
  const whole = Math.floor(micros / 1_000_000);
  return `${whole}.${String(micros - whole * 1_000_000).padStart(6, '0')}`;
}
