import { randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { startProxy, type TestProxy } from './helpers.js';
import { startLenientVendor } from './lenient-vendor.js';

/**
 * Issue 16, class-level: every combination of media type, content coding, BOM, parameter placement,
 * duplicates, spellings, number formats and path spellings, sent through the proxy to a lenient
 * vendor stand-in (a fake of our own that reads everything a permissive server could, and charges
 * the dearest reading). Whatever the proxy answers, the stand-in's ledger for a key never exceeds
 * its cap, and what the proxy booked is what the stand-in charged.
 */

/** Deterministic choices, so a failing case can be replayed from its seed. */
function* lcg(seed: number): Generator<number> {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    yield state;
  }
}

type Param = readonly [string, string];

interface Variant {
  readonly path: string;
  readonly contentType: string | undefined;
  readonly coding: string | undefined;
  readonly bom: boolean;
  readonly placement: Placement;
  readonly amount: string;
  readonly currency: string;
}

const PATHS = [
  '/v1/payment_intents',
  '/v1/charges',
  '/v1/PAYMENT_INTENTS',
  '/v1/Charges',
  '/v1/payment_intents%20',
  '/v1/charges.json',
  '/v1/payment_intents/',
  '/v1//charges',
  '/v1/Payment_Intents;x=1',
  '/v1/%70ayment_intents',
];
const CONTENT_TYPES = [
  'application/x-www-form-urlencoded',
  'application/x-www-form-urlencoded; charset=utf-8',
  'application/x-www-form-urlencoded; x=json',
  'APPLICATION/X-WWW-FORM-URLENCODED',
  'application/x-www-form-urlencoded; charset=iso-8859-1',
  'application/x-www-form-urlencoded, application/json',
  'application/json',
  'application/json; charset=UTF-8',
  'application/vnd.api+json',
  'text/plain',
  'text/json',
  'multipart/form-data; boundary=fuzzboundary',
  undefined,
];
const CODINGS = [undefined, 'identity', 'gzip', 'deflate', 'br', 'gzip, identity', 'x-gzip'];
const PLACEMENTS = [
  'body',
  'query',
  'amount-in-query',
  'repeated-amount',
  'repeated-currency',
  'body-and-query',
  'case-variant',
  'array-spelling',
  'space-in-name',
  'semicolon',
  'no-currency',
] as const;
type Placement = (typeof PLACEMENTS)[number];
/** Minor units: 100000 cents is $1,000, far past the $10 cap; 300 is $3. */
const AMOUNTS = ['100000', '300', '1e5', '100000abc', ' 100000', '0x186A0', '300.9', '-300', '99999999999999999999'];
const CURRENCIES = ['usd', 'USD', 'jpy', 'eur', ' usd'];

const BASELINE: Variant = {
  path: '/v1/payment_intents',
  contentType: 'application/x-www-form-urlencoded',
  coding: undefined,
  bom: false,
  placement: 'body',
  amount: '100000',
  currency: 'usd',
};

/** Every value of every dimension once on the baseline, then seeded random combinations. */
function variants(count: number, seed: number): Variant[] {
  const table: Variant[] = [
    ...PATHS.map((path) => ({ ...BASELINE, path })),
    ...CONTENT_TYPES.map((contentType) => ({ ...BASELINE, contentType })),
    ...CODINGS.map((coding) => ({ ...BASELINE, coding })),
    { ...BASELINE, bom: true },
    { ...BASELINE, bom: true, contentType: 'application/json' },
    ...PLACEMENTS.map((placement) => ({ ...BASELINE, placement })),
    ...PLACEMENTS.map((placement) => ({ ...BASELINE, placement, contentType: 'application/json' })),
    ...AMOUNTS.map((amount) => ({ ...BASELINE, amount })),
    ...CURRENCIES.map((currency) => ({ ...BASELINE, currency })),
    ...CURRENCIES.map((currency) => ({ ...BASELINE, currency, amount: '300' })),
  ];
  const random = lcg(seed);
  const pick = <T>(list: readonly T[]): T => list[(random.next().value as number) % list.length] as T;
  while (table.length < count) {
    table.push({
      path: pick(PATHS),
      contentType: pick(CONTENT_TYPES),
      coding: pick(CODINGS),
      bom: pick([false, false, true]),
      placement: pick(PLACEMENTS),
      amount: pick(AMOUNTS),
      currency: pick(CURRENCIES),
    });
  }
  return table;
}

/** The body parameters and query parameters a variant sends. */
function placeParams(variant: Variant): { body: Param[]; query: Param[]; json: string | undefined } {
  const { amount, currency } = variant;
  const both: Param[] = [
    ['amount', amount],
    ['currency', currency],
  ];
  switch (variant.placement) {
    case 'body':
      return { body: both, query: [], json: undefined };
    case 'query':
      return { body: [], query: both, json: undefined };
    case 'amount-in-query':
      return { body: [['currency', currency]], query: [['amount', amount]], json: undefined };
    case 'repeated-amount':
      return {
        body: [['amount', '100'], ...both],
        query: [],
        json: `{"amount":100,"currency":"${currency}","amount":"${amount}"}`,
      };
    case 'repeated-currency':
      return {
        body: [...both, ['currency', 'usd']],
        query: [],
        json: `{"amount":"${amount}","currency":"${currency}","currency":"usd"}`,
      };
    case 'body-and-query':
      return { body: [['amount', '100'], ...both.slice(1)], query: [['amount', amount]], json: undefined };
    case 'case-variant':
      return {
        body: [['amount', '100'], ['Amount', amount], ...both.slice(1)],
        query: [],
        json: undefined,
      };
    case 'array-spelling':
      return {
        body: [['amount[]', amount], ...both.slice(1)],
        query: [],
        json: `{"amount":["100","${amount}"],"currency":"${currency}"}`,
      };
    case 'space-in-name':
      return { body: [[' amount', amount], ...both.slice(1)], query: [], json: undefined };
    case 'semicolon':
      return { body: [], query: [], json: `{"x":1}` };
    case 'no-currency':
      return { body: [['amount', amount]], query: [], json: undefined };
  }
}

const encodeForm = (params: readonly Param[]): string =>
  params.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&');

/** The raw request of a variant: path with query, headers, body bytes. */
function buildRequest(variant: Variant): { path: string; headers: Record<string, string>; body: Buffer } {
  const { body, query, json } = placeParams(variant);
  const type = variant.contentType ?? '';
  let text: string;
  if (variant.placement === 'semicolon') {
    // `;` separates parameters for some parsers: the amount hides in another parameter's value.
    text =
      /json/i.test(type) && !/form/i.test(type) ? json! : `x=1;amount=${variant.amount};currency=${variant.currency}`;
  } else if (/multipart/i.test(type)) {
    text =
      body
        .map(([name, value]) => `--fuzzboundary\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`)
        .join('') + '--fuzzboundary--\r\n';
  } else if (/json/i.test(type) && !/form/i.test(type)) {
    text = json ?? JSON.stringify(Object.fromEntries(body));
  } else {
    text = encodeForm(body);
  }
  let bytes = Buffer.from(variant.bom ? `\uFEFF${text}` : text);
  const coding = variant.coding ?? '';
  if (coding.includes('gzip')) bytes = gzipSync(bytes);
  else if (coding === 'deflate') bytes = deflateSync(bytes);
  else if (coding === 'br') bytes = brotliCompressSync(bytes);
  const headers: Record<string, string> = {};
  if (variant.contentType !== undefined) headers['content-type'] = variant.contentType;
  if (variant.coding !== undefined) headers['content-encoding'] = variant.coding;
  const queryText = encodeForm(query);
  return { path: `/stripe${variant.path}${queryText ? `?${queryText}` : ''}`, headers, body: bytes };
}

function send(
  proxy: TestProxy,
  request: { path: string; headers: Record<string, string>; body: Buffer },
): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(proxy.url);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        hostname,
        port,
        method: 'POST',
        path: request.path,
        headers: { ...request.headers, 'content-length': request.body.length },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}

const CAP_USD = 10;
const EXPECTED_REFUSALS = new Set([
  'request_not_priceable',
  'cap_exhausted',
  'currency_not_supported',
  'unsupported_media_type',
  'invalid_request',
]);

describe('issue 16: request fuzzer against a lenient vendor stand-in (a fake of our own)', () => {
  it('Stripe: no combination of media type, coding, placement, duplicates or path lets the vendor charge past the cap', async () => {
    const vendor = await startLenientVendor();
    const proxy = await startProxy({
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, KEYBRAKE_FX_RATES: 'jpy=0.0067,eur=1.1' },
    });
    const outcomes = new Map<string, number>();
    const cases = variants(260, 16);
    for (const [i, variant] of cases.entries()) {
      const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: CAP_USD, allowed_endpoints: ['POST /v1/*'] });
      const caseId = randomUUID();
      const built = buildRequest(variant);
      const response = await send(proxy, {
        ...built,
        headers: { ...built.headers, authorization: `Bearer ${key.vault_key}`, 'x-case-id': caseId },
      });
      const label = `case ${i}: ${JSON.stringify(variant)} -> ${response.status} ${response.body.slice(0, 200)}`;
      const charged = vendor.byCase.get(caseId) ?? 0;
      // The promise: whatever the proxy made of it, the vendor charged no more than the cap.
      expect(charged, label).toBeLessThanOrEqual(CAP_USD + 1e-9);
      expect(response.status, label).toBeLessThan(500);
      const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
      if (response.status === 200) {
        // What the proxy booked is what the vendor charged.
        expect(state.spent_usd, label).toBeCloseTo(charged, 6);
        outcomes.set('forwarded', (outcomes.get('forwarded') ?? 0) + 1);
      } else {
        const code = (JSON.parse(response.body) as { error: { code: string } }).error.code;
        expect(EXPECTED_REFUSALS.has(code), label).toBe(true);
        expect(charged, label).toBe(0);
        expect(state.spent_usd, label).toBe(0);
        outcomes.set(code, (outcomes.get(code) ?? 0) + 1);
      }
      expect(state.reserved_usd, label).toBe(0);
    }
    console.log(
      `[figures] stripe fuzzer: ${cases.length} cases, outcomes ${JSON.stringify(Object.fromEntries(outcomes))}, stand-in charged $${vendor.total().toFixed(2)}`,
    );
    // Not vacuous: some calls were priced and forwarded, some priced and capped, some refused.
    expect(outcomes.get('forwarded') ?? 0).toBeGreaterThan(5);
    expect(outcomes.get('cap_exhausted') ?? 0).toBeGreaterThan(5);
    expect(outcomes.get('request_not_priceable') ?? 0).toBeGreaterThan(20);
  });

  it('Resend batches: no media type, coding or BOM lets a batch past the cap', async () => {
    const vendor = await startLenientVendor();
    const proxy = await startProxy({ env: { KEYBRAKE_RESEND_BASE_URL: vendor.url } });
    const outcomes = new Map<string, number>();
    const emails = (n: number): string =>
      JSON.stringify(
        Array.from({ length: n }, (_, i) => ({ from: 'a@example.com', to: `u${i}@example.com`, subject: 's' })),
      );
    // 100 emails cost $0.09 at the default price, past a $0.05 cap; 20 cost $0.018.
    for (const size of [100, 20]) {
      for (const contentType of [
        'application/json',
        'application/json; charset=utf-8',
        'text/plain',
        'application/x-www-form-urlencoded',
        undefined,
      ]) {
        for (const coding of [undefined, 'gzip', 'br', 'identity']) {
          for (const bom of [false, true]) {
            const key = await proxy.issueKey({
              vendor: 'resend',
              usd_cap: 0.05,
              allowed_endpoints: ['POST /emails/batch'],
            });
            const caseId = randomUUID();
            let bytes = Buffer.from(`${bom ? '\uFEFF' : ''}${emails(size)}`);
            if (coding === 'gzip') bytes = gzipSync(bytes);
            if (coding === 'br') bytes = brotliCompressSync(bytes);
            const headers: Record<string, string> = { authorization: `Bearer ${key.vault_key}`, 'x-case-id': caseId };
            if (contentType) headers['content-type'] = contentType;
            if (coding) headers['content-encoding'] = coding;
            const response = await send(proxy, { path: '/resend/emails/batch', headers, body: bytes });
            const label = `${size} emails, ${contentType}, ${coding}, bom ${bom} -> ${response.status} ${response.body.slice(0, 200)}`;
            const charged = vendor.byCase.get(caseId) ?? 0;
            expect(charged, label).toBeLessThanOrEqual(0.05 + 1e-9);
            const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
            if (response.status === 200) expect(state.spent_usd, label).toBeCloseTo(charged, 6);
            else expect(charged, label).toBe(0);
            const outcome =
              response.status === 200
                ? 'forwarded'
                : (JSON.parse(response.body) as { error: { code: string } }).error.code;
            outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
          }
        }
      }
    }
    console.log(`[figures] resend fuzzer: outcomes ${JSON.stringify(Object.fromEntries(outcomes))}`);
    expect(outcomes.get('forwarded') ?? 0).toBeGreaterThan(2);
    expect(outcomes.get('cap_exhausted') ?? 0).toBeGreaterThan(2);
  });
});
