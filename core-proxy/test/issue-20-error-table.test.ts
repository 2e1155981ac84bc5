import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  CapExhaustedError,
  CurrencyNotSupportedError,
  ERROR_TABLE,
  EndpointNotAllowedError,
  type ErrorCode,
  IdempotencyKeyInUseError,
  IdempotencyKeyReusedError,
  InvalidRequestError,
  InvalidVaultKeyError,
  KeyDepthExceededError,
  KeybrakeError,
  MethodNotAllowedError,
  NotFoundError,
  ObjectInUseError,
  OutcomeNotRecordedError,
  RequestNotPriceableError,
  StoreUnavailableError,
  TaintedRequestRefusedError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  UpstreamError,
  VaultKeyExpiredError,
  VaultKeyRevokedError,
  VendorMismatchError,
  VendorNotConfiguredError,
} from '../src/errors.js';
import { openApiDocument } from '../src/http/openapi.js';
import { toKeybrakeError } from '../src/http/plugins/errors.js';
import { BUILT_IN_REGISTRY } from '../src/vendors/registry.js';

/**
 * The contract's error list (`shared/CONTRACT.md`): every code it names, with the status it fixes.
 * Kept here so the test runs without the contract; checked against the contract's text when it
 * can be read from `../shared`.
 */
const CONTRACT_ERRORS: Readonly<Record<string, number>> = {
  vendor_not_configured: 400,
  unauthorized: 401,
  key_depth_exceeded: 400,
  invalid_request: 400,
  not_found: 404,
  invalid_vault_key: 401,
  vault_key_revoked: 401,
  vault_key_expired: 401,
  vendor_mismatch: 403,
  endpoint_not_allowed: 403,
  request_not_priceable: 400,
  cap_exhausted: 429,
  store_unavailable: 503,
  currency_not_supported: 400,
  idempotency_key_reused: 400,
  idempotency_key_in_use: 409,
  tainted_request_refused: 403,
};

const CONTRACT_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'shared', 'CONTRACT.md');

/**
 * `status → codes` as the contract's text writes them: `400 \`code\``, a table row
 * `| 401 | \`a\` / \`b\` |`, or `429 + header \`X\` | \`code\``.
 */
function contractErrors(text: string): Map<string, Set<number>> {
  const found = new Map<string, Set<number>>();
  const mention = /\b([45]\d\d)\b(?:\s*\+ header `[^`]*`)?[\s|]*((?:`[a-z_]+`(?:\s*\/\s*)?)+)/g;
  for (const match of text.matchAll(mention)) {
    for (const [, code] of (match[2] as string).matchAll(/`([a-z_]+)`/g)) {
      const statuses = found.get(code as string) ?? new Set<number>();
      statuses.add(Number(match[1]));
      found.set(code as string, statuses);
    }
  }
  return found;
}

/** `code → statuses` as OpenAPI documents them: `(error.code: a, b)` in each response's description. */
function openApiErrors(): Map<string, Set<number>> {
  const found = new Map<string, Set<number>>();
  const walk = (node: unknown): void => {
    if (node === null || typeof node !== 'object') return;
    const responses = (node as { responses?: Record<string, { description?: string }> }).responses;
    for (const [status, response] of Object.entries(responses ?? {})) {
      const codes = /\(error\.code: ([^)]*)\)/.exec(response.description ?? '')?.[1];
      for (const code of codes?.split(',').map((name) => name.trim()) ?? []) {
        const statuses = found.get(code) ?? new Set<number>();
        statuses.add(Number(status));
        found.set(code, statuses);
      }
    }
    for (const child of Object.values(node)) walk(child);
  };
  walk(openApiDocument(BUILT_IN_REGISTRY));
  return found;
}

describe('issue 20: one table of error codes (code → status → message)', () => {
  it.each(Object.entries(CONTRACT_ERRORS))('the contract code %s is in the table with status %i', (code, status) => {
    expect(ERROR_TABLE[code as ErrorCode]?.status).toBe(status);
  });

  it.skipIf(!existsSync(CONTRACT_PATH))(
    'the contract text (../shared/CONTRACT.md, when readable) names exactly these codes and statuses',
    () => {
      const fromText = contractErrors(readFileSync(CONTRACT_PATH, 'utf8'));
      expect(Object.fromEntries([...fromText].map(([code, statuses]) => [code, [...statuses]]))).toEqual(
        Object.fromEntries(Object.entries(CONTRACT_ERRORS).map(([code, status]) => [code, [status]])),
      );
    },
  );

  it('every code OpenAPI documents is in the table, under the status the table gives it', () => {
    const documented = openApiErrors();
    expect(documented.size).toBeGreaterThan(20);
    for (const [code, statuses] of documented) {
      expect({ code, statuses: [...statuses] }).toEqual({
        code,
        statuses: [ERROR_TABLE[code as ErrorCode]?.status],
      });
    }
  });

  it('every code in the table is documented in OpenAPI', () => {
    const documented = openApiErrors();
    expect(Object.keys(ERROR_TABLE).filter((code) => !documented.has(code))).toEqual([]);
  });

  it("the README's error table lists every code with the table's status, and nothing else", () => {
    const readme = readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| `([a-z_]+)` +\| (\d{3}) +\|/gm)].map(([, code, status]) => [
      code,
      Number(status),
    ]);
    expect(Object.fromEntries(rows)).toEqual(
      Object.fromEntries(Object.entries(ERROR_TABLE).map(([code, spec]) => [code, spec.status])),
    );
    expect(rows).toHaveLength(Object.keys(ERROR_TABLE).length);
  });

  it('every message is one sentence or more of its own, and no two codes share one', () => {
    const messages = Object.values(ERROR_TABLE).map((spec) => spec.message);
    expect(messages.every((message) => /^[A-Z].*\.$/.test(message))).toBe(true);
    expect(new Set(messages).size).toBe(messages.length);
  });

  // Each typed refusal: its code, the table's status for it, and a message that is the table's
  // unless its context adds detail.
  const refusals: [KeybrakeError, ErrorCode, 'table' | RegExp][] = [
    [new UnauthorizedError(), 'unauthorized', 'table'],
    [new InvalidRequestError('expires_in is required.'), 'invalid_request', /^expires_in is required\.$/],
    [new NotFoundError(), 'not_found', 'table'],
    [new MethodNotAllowedError('/vault/keys', 'PUT', ['GET', 'POST']), 'method_not_allowed', /PUT/],
    [new UnsupportedMediaTypeError(), 'unsupported_media_type', 'table'],
    [new VendorNotConfiguredError('twilio'), 'vendor_not_configured', /^No secret is configured for twilio /],
    [new KeyDepthExceededError(8), 'key_depth_exceeded', /at most 8 ancestors/],
    [new InvalidVaultKeyError(false), 'invalid_vault_key', /No vault key was presented/],
    [new InvalidVaultKeyError(true), 'invalid_vault_key', /not known/],
    [new VaultKeyRevokedError('vk_1'), 'vault_key_revoked', 'table'],
    [new VaultKeyExpiredError('vk_1'), 'vault_key_expired', 'table'],
    [new VendorMismatchError('stripe', 'resend'), 'vendor_mismatch', /issued for stripe, not resend/],
    [new EndpointNotAllowedError('POST', '/v1/refunds'), 'endpoint_not_allowed', /^POST \/v1\/refunds is not/],
    [new TaintedRequestRefusedError(), 'tainted_request_refused', 'table'],
    [
      new RequestNotPriceableError('The body is not JSON.'),
      'request_not_priceable',
      /^The body is not JSON\. The call/,
    ],
    [new CurrencyNotSupportedError('eur'), 'currency_not_supported', /"eur"/],
    [new CurrencyNotSupportedError('__proto__'), 'currency_not_supported', /^Currency this currency /],
    [new ObjectInUseError('pi_1'), 'object_in_use', 'table'],
    [new IdempotencyKeyReusedError(), 'idempotency_key_reused', 'table'],
    [new IdempotencyKeyInUseError(), 'idempotency_key_in_use', 'table'],
    [new CapExhaustedError('vk_1'), 'cap_exhausted', 'table'],
    [new StoreUnavailableError(), 'store_unavailable', 'table'],
    [new OutcomeNotRecordedError(), 'store_unavailable', /vendor was called/],
    [new UpstreamError('stripe', 'upstream_unreachable'), 'upstream_unreachable', 'table'],
    [new UpstreamError('stripe', 'upstream_error'), 'upstream_error', 'table'],
    [new UpstreamError('stripe', 'upstream_timeout'), 'upstream_timeout', 'table'],
  ];
  it.each(refusals)('%s carries its code, the table status and its message', (error, code, message) => {
    expect(error).toBeInstanceOf(KeybrakeError);
    expect(error.code).toBe(code);
    expect(error.statusCode).toBe(ERROR_TABLE[code].status);
    expect(error.toJSON()).toEqual({ error: { code, message: error.message } });
    if (message === 'table') expect(error.message).toBe(ERROR_TABLE[code].message);
    else expect(error.message).toMatch(message);
  });

  it('a cap hit carries X-Keybrake-Cap-Hit and its context', () => {
    const error = new CapExhaustedError('vk_parent');
    expect(error.headers['x-keybrake-cap-hit']).toBe('true');
    expect(error.capKeyId).toBe('vk_parent');
  });

  // Regression: issue 20. A framework 4xx without a code of its own was answered as
  // `invalid_request` with the framework's status (406, 404...): one code, several statuses.
  const frameworkErrors: [string, Error, ErrorCode][] = [
    ['a 406', Object.assign(new Error('Not acceptable'), { statusCode: 406 }), 'invalid_request'],
    ['a 404', Object.assign(new Error('Not found'), { statusCode: 404 }), 'not_found'],
    ['a 413', Object.assign(new Error('Too large'), { statusCode: 413 }), 'payload_too_large'],
    ['a 400', Object.assign(new Error('Bad'), { statusCode: 400 }), 'invalid_request'],
    [
      'an empty JSON body',
      Object.assign(new Error('Empty'), { code: 'FST_ERR_CTP_EMPTY_JSON_BODY' }),
      'invalid_request',
    ],
    ['a 503 while closing', Object.assign(new Error('Closing'), { statusCode: 503 }), 'shutting_down'],
    ['anything else', new Error('boom'), 'internal_error'],
  ];
  it.each(frameworkErrors)('%s from the framework gets its code and the table status for it', (_name, error, code) => {
    const mapped = toKeybrakeError(error);
    expect([mapped.code, mapped.statusCode]).toEqual([code, ERROR_TABLE[code].status]);
  });
});
