import type { IncomingHttpHeaders } from 'node:http';
import { RequestNotPriceableError } from '../errors.js';
import { type EndpointPattern, formatEndpointPattern } from '../keys/allowlist.js';
import { VAULT_KEY_PREFIX } from '../keys/vault-keys.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import {
  type MoneyMovingEndpoint,
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  type VendorSecrets,
  readBasic,
  readBearer,
  readJson,
  readParams,
} from './vendor.js';

/**
 * How clients present the vault key: as the vendor's own SDK presents its secret.
 * - `bearer`: `Authorization: Bearer <vault key>`;
 * - `basic`: `Authorization: Basic`, the vault key as the username or the password (`field`;
 *   unset: whichever starts with `kb_vk_`, else the password);
 * - `header`: the vault key alone in the named header (never forwarded).
 */
export type VaultKeyPresentation =
  | { readonly scheme: 'bearer' }
  | { readonly scheme: 'basic'; readonly field?: 'username' | 'password' }
  | { readonly scheme: 'header'; readonly header: string };

/**
 * How the real secret is injected upstream.
 * - `bearer`: `Authorization: Bearer <secret>`;
 * - `basic`: `Authorization: Basic`, the secret as the password of `username`, or as the username
 *   with an empty password when no `username` is given (as Stripe takes it);
 * - `header`: the secret alone in the named header.
 */
export type SecretInjection =
  | { readonly scheme: 'bearer' }
  | { readonly scheme: 'basic'; readonly username?: string }
  | { readonly scheme: 'header'; readonly header: string };

/**
 * What one endpoint of a declared vendor costs.
 * - `flat`: the same price for every call;
 * - `request`: a number the request carries (`field`, a dotted path into the JSON or form body or
 *   the query) times `usdPerUnit`, reserved as is; a missing, repeated or non-numeric field is
 *   refused (`request_not_priceable`), as is a cost above `maxUsd` when it is set;
 * - `response`: reserved at `maxUsd`, settled from a number in the vendor's 2xx JSON answer
 *   (`field` times `usdPerUnit`); an answer without it books the whole reservation.
 */
export type DeclaredCost =
  | { readonly kind: 'flat'; readonly usd: number }
  | { readonly kind: 'request'; readonly field: string; readonly usdPerUnit: number; readonly maxUsd?: number }
  | { readonly kind: 'response'; readonly field: string; readonly usdPerUnit: number; readonly maxUsd: number };

/** A vendor declared in `KEYBRAKE_VENDORS_FILE`, checked (see `vendors-file.ts`). */
export interface VendorDeclaration {
  readonly name: string;
  readonly baseUrl: string;
  readonly vaultKey: VaultKeyPresentation;
  /** The environment variable holding the real secret (or `<NAME>_FILE`, a path to it). */
  readonly secretEnv: string;
  readonly injection: SecretInjection;
  /** Priced endpoints, first match wins; every one is also refused to tainted requests. */
  readonly costs: readonly { readonly pattern: EndpointPattern; readonly cost: DeclaredCost }[];
  /** Where the vendor's id for a call is: a response header, or a field of the JSON answer. @default none */
  readonly requestId?: { readonly header: string } | { readonly bodyField: string };
  /** Endpoints refused to tainted requests besides the priced ones. @default none */
  readonly sensitive: readonly EndpointPattern[];
  /**
   * Response headers (lower-case) never passed back to clients: the vendor's internal ones (a
   * debug trace, an upstream host). Every header is scrubbed of the secret regardless. @default none
   */
  readonly dropResponseHeaders: readonly string[];
}

/** A whole, non-negative decimal number as a vendor's JSON or form field carries it. */
const DECIMAL = /^\d{1,15}(\.\d{1,12})?$/;

/** `a.b.c` as the bracket name the request reader flattens JSON to (`a[b][c]`). */
function bracketName(field: string): string {
  const [head, ...rest] = field.split('.');
  return `${head as string}${rest.map((part) => `[${part}]`).join('')}`;
}

/** The value at a dotted path of a parsed JSON answer. */
function jsonField(json: unknown, field: string): unknown {
  let value = json;
  for (const part of field.split('.')) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, part)) return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

/** A JSON number or decimal string as a non-negative finite number, or `undefined`. */
function nonNegativeNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  return typeof value === 'string' && DECIMAL.test(value) ? Number(value) : undefined;
}

function catalogueEntry(vendorName: string, pattern: EndpointPattern, cost: DeclaredCost): MoneyMovingEndpoint {
  const endpoint = formatEndpointPattern(pattern);
  if (cost.kind === 'flat') {
    const micros = usdToMicros(cost.usd);
    return { pattern, moves: `${endpoint}: $${cost.usd} a call (declared)`, estimate: () => micros };
  }
  if (cost.kind === 'request') {
    const name = bracketName(cost.field);
    const maxMicros = cost.maxUsd === undefined ? undefined : usdToMicros(cost.maxUsd);
    return {
      pattern,
      moves: `${endpoint}: the request's ${cost.field} (declared)`,
      estimate(request: VendorRequest): Micros {
        // Strict reading: a field sent twice, in body and query, or under another spelling is refused.
        const text = readParams(request).one(name);
        if (text === undefined || !DECIMAL.test(text)) {
          throw new RequestNotPriceableError(
            `${vendorName}: ${endpoint} is priced from the request's "${cost.field}", which is missing or not a non-negative number.`,
          );
        }
        const micros = usdToMicros(Number(text) * cost.usdPerUnit);
        if (maxMicros !== undefined && micros > maxMicros) {
          throw new RequestNotPriceableError(
            `${vendorName}: "${cost.field}" prices this call above its declared maximum of $${cost.maxUsd}.`,
          );
        }
        return micros;
      },
    };
  }
  const reserved = usdToMicros(cost.maxUsd);
  return {
    pattern,
    moves: `${endpoint}: the answer's ${cost.field}, at most $${cost.maxUsd} (declared)`,
    estimate: () => reserved,
    settle(_request: VendorRequest, response: VendorResponse, estimate: Micros): Micros {
      // An answer that does not say what it cost books the whole reservation.
      const value = nonNegativeNumber(jsonField(readJson(response.body), cost.field));
      return value === undefined ? estimate : usdToMicros(value * cost.usdPerUnit);
    },
  };
}

function vaultKeyReader(presentation: VaultKeyPresentation): (headers: IncomingHttpHeaders) => string | undefined {
  switch (presentation.scheme) {
    case 'bearer':
      return readBearer;
    case 'basic': {
      const { field } = presentation;
      return (headers) => {
        const credentials = readBasic(headers);
        if (!credentials) return undefined;
        const [username, password] = credentials;
        if (field === 'username') return username || undefined;
        if (field === 'password') return password || undefined;
        return username.startsWith(VAULT_KEY_PREFIX) ? username : password || undefined;
      };
    }
    case 'header': {
      const name = presentation.header.toLowerCase();
      return (headers) => {
        const value = headers[name];
        return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
      };
    }
  }
}

/** The header carrying the real secret upstream. */
function injectedHeader(injection: SecretInjection, secret: string): [string, string] {
  switch (injection.scheme) {
    case 'bearer':
      return ['authorization', `Bearer ${secret}`];
    case 'basic': {
      const pair = injection.username === undefined ? `${secret}:` : `${injection.username}:${secret}`;
      return ['authorization', `Basic ${Buffer.from(pair).toString('base64')}`];
    }
    case 'header':
      return [injection.header.toLowerCase(), secret];
  }
}

/** Every way the secret could come back in a body: as is, JSON-escaped, and as its Basic token. */
function secretForms(injection: SecretInjection, secret: string): Buffer[] {
  const forms = new Set([secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)]);
  if (injection.scheme === 'basic') forms.add((injectedHeader(injection, secret)[1] as string).slice('Basic '.length));
  return [...forms].filter((form) => form.length > 0).map((form) => Buffer.from(form));
}

const REDACTED_TEXT = '[secret removed by keybrake]';
const REDACTED = Buffer.from(REDACTED_TEXT);

/** Replaces every occurrence of `needle` in `body`. */
function replaceAll(body: Buffer, needle: Buffer): Buffer {
  const parts: Buffer[] = [];
  let from = 0;
  for (let at = body.indexOf(needle); at >= 0; at = body.indexOf(needle, from)) {
    parts.push(body.subarray(from, at), REDACTED);
    from = at + needle.length;
  }
  parts.push(body.subarray(from));
  return Buffer.concat(parts);
}

/**
 * The vendor module of a declared vendor: the same interface as a built-in one, so it gets the
 * same pipeline (allowlist, taint, pricing, reservation, cap, idempotency, audit, scrubbing).
 */
export function declaredVendor(declaration: VendorDeclaration): VendorModule {
  const { secretEnv, injection, requestId } = declaration;
  const dropped = new Set(declaration.dropResponseHeaders.map((name) => name.toLowerCase()));
  const vaultKeyHeader =
    declaration.vaultKey.scheme === 'header' ? declaration.vaultKey.header.toLowerCase() : undefined;
  // The forms of the secret are computed once, when the secret is first seen: it never changes.
  let masked: { secret: string; forms: Buffer[] } | undefined;
  const formsOf = (secrets: VendorSecrets): Buffer[] => {
    const secret = secrets[secretEnv] as string;
    if (masked?.secret !== secret) masked = { secret, forms: secretForms(injection, secret) };
    return masked.forms;
  };
  return {
    name: declaration.name,
    defaultBaseUrl: declaration.baseUrl,
    secretNames: [secretEnv],
    catalogue: declaration.costs.map(({ pattern, cost }) => catalogueEntry(declaration.name, pattern, cost)),
    sensitiveEndpoints: declaration.sensitive,
    readVaultKey: vaultKeyReader(declaration.vaultKey),
    vaultKeyHeaders: vaultKeyHeader === undefined ? undefined : [vaultKeyHeader],

    prepareUpstream(request, secrets) {
      const [name, value] = injectedHeader(injection, secrets[secretEnv] as string);
      return { segments: request.segments, headers: { [name]: value } };
    },

    vendorRequestId(response) {
      if (!requestId) return undefined;
      if ('header' in requestId) {
        const value = response.headers[requestId.header.toLowerCase()];
        return typeof value === 'string' && value !== '' ? value : undefined;
      }
      const value = jsonField(readJson(response.body), requestId.bodyField);
      return typeof value === 'string' || typeof value === 'number' ? String(value) : undefined;
    },

    maskResponseBody(_request, body, secrets) {
      let result = body;
      for (const form of formsOf(secrets)) if (result.includes(form)) result = replaceAll(result, form);
      return result;
    },

    // Regression: issue 20. A declared vendor's response headers came back as they were sent, the
    // secret included (an echoing API, a Location URL carrying it); only the body was scrubbed.
    maskResponseHeaders(headers, secrets) {
      const forms = formsOf(secrets).map((form) => form.toString('utf8'));
      const scrub = (value: string) =>
        forms.reduce((text, form) => (text.includes(form) ? text.split(form).join(REDACTED_TEXT) : text), value);
      const result: Record<string, string | string[]> = {};
      for (const [name, value] of Object.entries(headers)) {
        if (dropped.has(name)) continue;
        result[name] = Array.isArray(value) ? value.map(scrub) : scrub(value);
      }
      return result;
    },
  };
}
