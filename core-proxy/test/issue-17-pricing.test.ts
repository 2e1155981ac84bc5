import { describe, expect, it } from 'vitest';
import { formatEndpointPattern } from '../src/keys/allowlist.js';
import { loadConfig } from '../src/config.js';
import { VENDORS } from '../src/vendors/index.js';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge, type TestProxy } from './helpers.js';
import { startResendStandIn, startStripeStandIn, startTwilioStandIn } from './stand-in-vendors.js';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** The endpoints issue 17 names as money-moving: each must be in its vendor's catalogue. */
const NAMED_IN_ISSUE_17: Record<string, string[]> = {
  stripe: [
    'POST /v1/charges',
    'POST /v1/payment_intents',
    'POST /v1/payment_intents/*/confirm',
    'POST /v1/payment_intents/*/capture',
    'POST /v1/payment_intents/*/increment_authorization',
    'POST /v1/refunds',
    'POST /v1/transfers',
    'POST /v1/payouts',
    'POST /v1/topups',
    'POST /v1/invoices/*/pay',
    'POST /v1/subscriptions',
    'POST /v1/checkout/sessions',
  ],
  twilio: ['POST /2010-04-01/Accounts/*/Messages.json', 'POST /2010-04-01/Accounts/*/Calls.json'],
  resend: ['POST /emails', 'POST /emails/batch', 'POST /broadcasts/*/send'],
};

/** A plausible request to a catalogued endpoint: what an agent would send. */
function plausibleCall(vendor: string, endpoint: string, vaultKey: string): { path: string; init: RequestInit } {
  const path = endpoint
    .split(' ')[1]!
    .split('/')
    .map((segment) =>
      segment === '*' ? (segment === '*' && vendor === 'twilio' ? 'ACplaceholder' : 'obj_1') : segment,
    )
    .join('/');
  if (vendor === 'resend') {
    const email = { from: 'a@example.com', to: ['b@example.com'], subject: 'hi', text: 'hi' };
    return {
      path: `/resend${path}`,
      init: {
        method: 'POST',
        headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/json' },
        body: JSON.stringify(path.endsWith('/batch') ? [email] : email),
      },
    };
  }
  const form = new URLSearchParams(
    vendor === 'twilio'
      ? { To: '+15005550006', From: '+15005550001', Body: 'hi', Url: 'https://example.com/twiml' }
      : { amount: '5000', currency: 'usd', payment_intent: 'pi_1', destination: 'acct_1', customer: 'cus_1' },
  ).toString();
  return {
    path: `/${vendor}${path}`,
    init: {
      method: 'POST',
      headers: {
        authorization: vendor === 'twilio' ? basic('ACplaceholder', vaultKey) : `Bearer ${vaultKey}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: form,
    },
  };
}

async function spend(proxy: TestProxy, keyId: string): Promise<{ spent_usd: number; unknown_usd: number }> {
  return (await proxy.admin('GET', `/vault/keys/${keyId}`)).body;
}

describe('issue 17: the catalogue of money-moving endpoints (fake vendor that answers 200 to anything)', () => {
  it('lists every endpoint the issue names', () => {
    for (const [vendor, endpoints] of Object.entries(NAMED_IN_ISSUE_17)) {
      const catalogue = VENDORS.get(vendor)!.catalogue.map((entry) => formatEndpointPattern(entry.pattern));
      for (const endpoint of endpoints) expect(catalogue, vendor).toContain(endpoint);
    }
  });

  /**
   * The catalogued endpoints whose plausible call (above) the proxy prices from the request alone:
   * refused for the cap. Every other one is refused as not priceable: its price depends on an
   * object the proxy has not seen (a refund, a capture, a subscription) or on what the vendor will
   * bill (a phone number, a participant, a broadcast). A new catalogue entry is expected to be the
   * latter until it is added here.
   */
  const PRICED_FROM_REQUEST = new Set([
    'resend POST /emails',
    'resend POST /emails/batch',
    'stripe POST /v1/charges',
    'stripe POST /v1/payment_intents',
    'stripe POST /v1/payouts',
    'stripe POST /v1/topups',
    'stripe POST /v1/transfers',
    'twilio POST /2010-04-01/Accounts/*/Calls.json',
    'twilio POST /2010-04-01/Accounts/*/Messages.json',
  ]);

  it('no catalogued endpoint is free by default: under a one-micro-dollar cap none reaches the vendor', async () => {
    const upstream = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'x', price: null }));
    const proxy = await startProxy({
      env: {
        KEYBRAKE_STRIPE_BASE_URL: upstream.url,
        KEYBRAKE_TWILIO_BASE_URL: upstream.url,
        KEYBRAKE_RESEND_BASE_URL: upstream.url,
        // Calls become priced (per minute) rather than refused: still never free.
        KEYBRAKE_TWILIO_CALL_MINUTE_USD: '0.014',
      },
    });
    for (const vendor of VENDORS.values()) {
      const endpoints = vendor.catalogue.map((entry) => formatEndpointPattern(entry.pattern));
      const key = await proxy.issueKey({ vendor: vendor.name, usd_cap: 0.000001, allowed_endpoints: endpoints });
      for (const endpoint of endpoints) {
        const { path, init } = plausibleCall(vendor.name, endpoint, key.vault_key);
        const response = await proxy.call(path, init);
        const code = (await json(response)).error?.code;
        const expected = PRICED_FROM_REQUEST.has(`${vendor.name} ${endpoint}`)
          ? { status: 429, code: 'cap_exhausted' }
          : { status: 400, code: 'request_not_priceable' };
        expect({ status: response.status, code }, `${vendor.name} ${endpoint}`).toEqual(expected);
      }
    }
    expect(upstream.received).toHaveLength(0);
  });

  it('every catalogued endpoint is sensitive: a tainted key reaches none of them', async () => {
    const upstream = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'x' }));
    const proxy = await startProxy({
      env: {
        KEYBRAKE_STRIPE_BASE_URL: upstream.url,
        KEYBRAKE_TWILIO_BASE_URL: upstream.url,
        KEYBRAKE_RESEND_BASE_URL: upstream.url,
      },
    });
    for (const vendor of VENDORS.values()) {
      const endpoints = vendor.catalogue.map((entry) => formatEndpointPattern(entry.pattern));
      const key = await proxy.issueKey({
        vendor: vendor.name,
        usd_cap: 1000,
        allowed_endpoints: endpoints,
        tainted: true,
      });
      for (const endpoint of endpoints) {
        const { path, init } = plausibleCall(vendor.name, endpoint, key.vault_key);
        const response = await proxy.call(path, init);
        expect(response.status, endpoint).toBe(403);
        expect((await json(response)).error.code, endpoint).toBe('tainted_request_refused');
      }
    }
    expect(upstream.received).toHaveLength(0);
  });

  it('a flat cost rule is refused at start for an endpoint the proxy prices from the request or the object', () => {
    for (const endpoint of ['POST /v1/payment_intents/*/confirm', 'POST /v1/payouts', 'POST /v1/payment_intents']) {
      expect(
        () =>
          loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_COST_RULES: JSON.stringify({ stripe: { [endpoint]: 100 } }) }),
        endpoint,
      ).toThrow(/a flat rule cannot bound it/);
    }
    expect(() =>
      loadConfig({
        KEYBRAKE_API_KEYS: 'k',
        KEYBRAKE_COST_RULES: JSON.stringify({ stripe: { 'POST /v1/invoices/*/pay': 50 } }),
      }),
    ).not.toThrow();
  });
});

describe('issue 17: Stripe (stand-in Stripe that bills as Stripe documents)', () => {
  async function setup(allowed: string[], cap: number, options: Parameters<typeof startStripeStandIn>[0] = {}) {
    const stripe = await startStripeStandIn(options);
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: stripe.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: cap, allowed_endpoints: allowed });
    const post = (path: string, params: Record<string, string>) =>
      proxy.call(`/stripe${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params).toString(),
      });
    return { stripe, proxy, key, post };
  }

  it('a $50 payout, transfer or refund under a $10 cap reaches no vendor', async () => {
    const { stripe, proxy, key, post } = await setup(
      ['POST /v1/payouts', 'POST /v1/transfers', 'POST /v1/refunds'],
      10,
    );
    const payout = await post('/v1/payouts', { amount: '5000', currency: 'usd' });
    expect(payout.status).toBe(429);
    const transfer = await post('/v1/transfers', { amount: '5000', currency: 'usd', destination: 'acct_1' });
    expect(transfer.status).toBe(429);
    const refund = await post('/v1/refunds', { payment_intent: 'pi_1', amount: '5000' });
    expect(refund.status).toBe(400);
    expect((await json(refund)).error.code).toBe('request_not_priceable');
    expect(stripe.ledger.totalUsd).toBe(0);
    expect((await spend(proxy, key.key_id)).spent_usd).toBe(0);
    // A payout that fits is priced at its amount.
    expect((await post('/v1/payouts', { amount: '900', currency: 'usd' })).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBe(9);
    expect((await spend(proxy, key.key_id)).spent_usd).toBe(9);
  });

  it('a vendor 5xx after charging is unknown spend: 20 × $4 under a $10 cap leave at most $10 at the vendor', async () => {
    const { stripe, proxy, key } = await setup(['POST /v1/charges'], 10, { failAfterCharging: () => true });
    const answers = await Promise.all(
      Array.from({ length: 20 }, () =>
        proxy.call('/stripe/v1/charges', {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: 'amount=400&currency=usd&source=tok_visa',
        }),
      ),
    );
    const statuses = answers.map((answer) => answer.status);
    expect(statuses.filter((status) => status === 500)).toHaveLength(2);
    expect(statuses.filter((status) => status === 429)).toHaveLength(18);
    expect(stripe.ledger.totalUsd).toBeLessThanOrEqual(10);
    const state = await spend(proxy, key.key_id);
    expect(state).toMatchObject({ spent_usd: 8, unknown_usd: 8 });
    expect(state.spent_usd).toBeGreaterThanOrEqual(stripe.ledger.totalUsd);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    const unknown = calls.filter((call: { outcome: string }) => call.outcome === 'unknown');
    expect(unknown).toHaveLength(2);
    expect(unknown[0]).toMatchObject({ status: 500, cost_usd: 4, reason: 'upstream_5xx' });
  });

  it.each(['__proto__', 'constructor', 'toString', 'hasOwnProperty'])(
    'currency=%s is a 400 with an audit record, and reaches no vendor',
    async (currency) => {
      const { stripe, proxy, key, post } = await setup(['POST /v1/payment_intents'], 10);
      const response = await post('/v1/payment_intents', { amount: '500', currency });
      expect(response.status).toBe(400);
      expect((await json(response)).error.code).toBe('currency_not_supported');
      expect(stripe.received).toHaveLength(0);
      const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
      expect(calls).toHaveLength(1);
      expect(calls[0]).toMatchObject({ outcome: 'blocked', reason: 'currency_not_supported', status: 400 });
      expect((await proxy.admin('GET', '/audit/verify')).body.ok).toBe(true);
    },
  );

  it('a confirm, capture or increment of a PaymentIntent the proxy cannot price reaches no vendor', async () => {
    const { stripe, proxy, key, post } = await setup(
      [
        'POST /v1/payment_intents',
        'POST /v1/payment_intents/*',
        'POST /v1/payment_intents/*/confirm',
        'POST /v1/payment_intents/*/increment_authorization',
        'POST /v1/payment_intents/*/capture',
      ],
      1,
    );
    const created = await json(await post('/v1/payment_intents', { amount: '50', currency: 'usd' }));
    await post(`/v1/payment_intents/${created.id}`, { amount: '500000' });
    const confirm = await post(`/v1/payment_intents/${created.id}/confirm`, {});
    // The proxy saw the amount raised to $5,000: the confirm is priced at that, over the $1 cap.
    expect({ status: confirm.status, code: (await json(confirm)).error.code }).toEqual({
      status: 429,
      code: 'cap_exhausted',
    });
    expect(stripe.ledger.totalUsd).toBeLessThanOrEqual(1);
    expect((await spend(proxy, key.key_id)).spent_usd).toBeGreaterThanOrEqual(stripe.ledger.totalUsd);
  });
});

describe('issue 17: Twilio (stand-in Twilio that bills segments as Twilio publishes)', () => {
  async function setup(
    env: Record<string, string>,
    cap: number,
    options: Parameters<typeof startTwilioStandIn>[0] = {},
  ) {
    const twilio = await startTwilioStandIn(options);
    const proxy = await startProxy({ env: { KEYBRAKE_TWILIO_BASE_URL: twilio.url, ...env } });
    const key = await proxy.issueKey({
      vendor: 'twilio',
      usd_cap: cap,
      allowed_endpoints: ['POST /2010-04-01/Accounts/*/Messages.json', 'POST /2010-04-01/Accounts/*/Calls.json'],
    });
    const send = (params: Record<string, string>, resource = 'Messages') =>
      proxy.call(`/twilio/2010-04-01/Accounts/ACplaceholder/${resource}.json`, {
        method: 'POST',
        headers: {
          authorization: basic('ACplaceholder', key.vault_key),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ From: '+15005550001', ...params }).toString(),
      });
    return { twilio, proxy, key, send };
  }

  it.each([
    ['ā×66 + 😀 + ā×66 (a surrogate pair is never split)', `${'ā'.repeat(66)}😀${'ā'.repeat(66)}`],
    [
      '20 combining-mark clusters (a cluster is never split)',
      'a\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309\u030a\u030b\u030c\u030d\u030e\u030f\u0310\u0311\u0312\u0313\u0314\u0315\u0316\u0317\u0318\u0319\u031a\u031b\u031c\u031d\u031e\u031f\u0320\u0321\u0322\u0323'.repeat(
        20,
      ),
    ],
    [
      'GSM-7 with extension characters on segment boundaries',
      `${'a'.repeat(152)}€${'b'.repeat(152)}{${'c'.repeat(10)}`,
    ],
  ])('80 concurrent texts of %s: the vendor never bills more than the cap', async (_name, body) => {
    const { twilio, proxy, key, send } = await setup({}, 0.5);
    const answers = await Promise.all(Array.from({ length: 80 }, () => send({ To: '+14155550100', Body: body })));
    const sent = answers.filter((answer) => answer.status === 201).length;
    expect(sent).toBeGreaterThan(0);
    // One of two by design: which concurrent call wins a reservation depends on timing; every one is
    // sent or refused for the cap, and the ledger below bounds what was sent.
    expect(answers.every((answer) => answer.status === 201 || answer.status === 429)).toBe(true);
    expect(twilio.ledger.totalUsd).toBeLessThanOrEqual(0.5);
    // Twilio answered price: null: the reservation (an upper bound) stays booked.
    expect((await spend(proxy, key.key_id)).spent_usd).toBeGreaterThanOrEqual(twilio.ledger.totalUsd);
  });

  it('prices by destination: 60 concurrent UK texts, and an unlisted destination at the worst case', async () => {
    const { twilio, proxy, key, send } = await setup({}, 1);
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => send({ To: '+447700900123', Body: 'x'.repeat(900) })),
    );
    expect(answers.filter((answer) => answer.status === 201).length).toBeGreaterThan(0);
    expect(twilio.ledger.totalUsd).toBeLessThanOrEqual(1);
    expect((await spend(proxy, key.key_id)).spent_usd).toBeGreaterThanOrEqual(twilio.ledger.totalUsd);
    const nepal = await setup({}, 0.4);
    const toNepal = await Promise.all(
      Array.from({ length: 60 }, () => nepal.send({ To: '+9779800000000', Body: 'hi' })),
    );
    expect(toNepal.filter((answer) => answer.status === 201).length).toBeGreaterThan(0);
    expect(nepal.twilio.ledger.totalUsd).toBeLessThanOrEqual(0.4);
  });

  it('refuses unlisted destinations when the operator says so', async () => {
    const { twilio, send } = await setup({ KEYBRAKE_TWILIO_UNLISTED_SEGMENT_USD: 'refuse' }, 1);
    // Greenland: in no price list.
    const response = await send({ To: '+299321000', Body: 'hi' });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('request_not_priceable');
    // Jamaica shares +1 with the US but is not priced as the US.
    expect((await send({ To: '+18765550100', Body: 'hi' })).status).toBe(400);
    expect(twilio.received).toHaveLength(0);
  });

  it('prices an MMS (MediaUrl or SendAsMms) as an MMS', async () => {
    const { twilio, proxy, key, send } = await setup({}, 0.05);
    expect((await send({ To: '+14155550100', Body: 'hi', SendAsMms: 'true' })).status).toBe(201);
    expect((await send({ To: '+14155550100', MediaUrl: 'https://example.com/a.png' })).status).toBe(201);
    const third = await send({ To: '+14155550100', Body: 'hi', SendAsMms: 'true' });
    expect(third.status).toBe(429);
    expect(twilio.ledger.totalUsd).toBeLessThanOrEqual(0.05);
    expect((await spend(proxy, key.key_id)).spent_usd).toBeCloseTo(0.044, 6);
  });

  it('refuses a ContentSid message with no configured price, and prices it when configured', async () => {
    const sid = `HX${'a'.repeat(32)}`;
    const refused = await setup({}, 1, { templateSegments: { [sid]: 11 } });
    const response = await refused.send({ To: '+14155550100', ContentSid: sid });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('request_not_priceable');
    expect(refused.twilio.received).toHaveLength(0);

    const priced = await setup({ KEYBRAKE_TWILIO_CONTENT_USD: JSON.stringify({ [sid]: 0.1 }) }, 0.25, {
      templateSegments: { [sid]: 11 },
    });
    const answers = await Promise.all(
      Array.from({ length: 10 }, () => priced.send({ To: '+14155550100', ContentSid: sid })),
    );
    expect(answers.filter((answer) => answer.status === 201)).toHaveLength(2);
    expect(priced.twilio.ledger.totalUsd).toBeLessThanOrEqual(0.25);
  });

  it('settles price_unit case-insensitively and converts it, or keeps the upper bound', async () => {
    const cases: [string, Record<string, string>, number][] = [
      ['usd', {}, 0.0079],
      ['EUR', { KEYBRAKE_FX_RATES: 'eur=1.1' }, 0.00869],
      ['GBP', {}, 0.0083], // no rate: the reservation stays booked
    ];
    for (const [unit, env, expected] of cases) {
      const { proxy, key, send } = await setup(env, 1, {
        answerPrice: (usd) => ({ price: `-${usd.toFixed(4)}`, price_unit: unit }),
      });
      expect((await send({ To: '+14155550100', Body: 'hi' })).status).toBe(201);
      expect((await spend(proxy, key.key_id)).spent_usd, unit).toBeCloseTo(expected, 6);
    }
  });

  it('books a settled price above the reservation, and refuses the next call', async () => {
    const { proxy, key, send } = await setup({}, 0.295, {
      answerPrice: () => ({ price: '-0.29', price_unit: 'USD' }),
    });
    expect((await send({ To: '+14155550100', Body: 'hi' })).status).toBe(201);
    expect((await spend(proxy, key.key_id)).spent_usd).toBeCloseTo(0.29, 6);
    const next = await send({ To: '+14155550100', Body: 'hi' });
    expect(next.status).toBe(429);
  });

  it('books the segments Twilio reports when they cost more than the reservation', async () => {
    const sid = `HX${'b'.repeat(32)}`;
    // The operator's template price is too low: Twilio bills 11 segments.
    const { twilio, proxy, key, send } = await setup(
      { KEYBRAKE_TWILIO_CONTENT_USD: JSON.stringify({ [sid]: 0.01 }) },
      1,
      {
        templateSegments: { [sid]: 11 },
      },
    );
    expect((await send({ To: '+14155550100', ContentSid: sid })).status).toBe(201);
    expect(twilio.ledger.totalUsd).toBeCloseTo(0.0869, 6);
    expect((await spend(proxy, key.key_id)).spent_usd).toBeCloseTo(0.0913, 6);
  });

  it('refuses calls until a per-minute price is set, then prices them for their TimeLimit', async () => {
    const refused = await setup({}, 10);
    const response = await refused.send({ To: '+14155550100', Url: 'https://example.com/twiml' }, 'Calls');
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('request_not_priceable');
    const priced = await setup({ KEYBRAKE_TWILIO_CALL_MINUTE_USD: '0.014' }, 1);
    // Twilio's default limit is 4 hours: 240 minutes × $0.014 = $3.36 > $1.
    const long = await priced.send({ To: '+14155550100', Url: 'https://example.com/twiml' }, 'Calls');
    expect(long.status).toBe(429);
    expect(priced.twilio.received).toHaveLength(0);
  });
});

describe('issue 17: Resend (stand-in Resend that bills every recipient)', () => {
  async function setup(cap: number, allowed = ['POST /emails', 'POST /emails/batch']) {
    const resend = await startResendStandIn();
    const proxy = await startProxy({ env: { KEYBRAKE_RESEND_BASE_URL: resend.url } });
    const key = await proxy.issueKey({ vendor: 'resend', usd_cap: cap, allowed_endpoints: allowed });
    const post = (path: string, body: unknown) =>
      proxy.call(`/resend${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    return { resend, proxy, key, post };
  }
  const addresses = (n: number, domain: string) => Array.from({ length: n }, (_, i) => `r${i}@${domain}`);
  const email = (to: number, cc = 0, bcc = 0) => ({
    from: 'a@example.com',
    to: addresses(to, 'to.example'),
    ...(cc ? { cc: addresses(cc, 'cc.example') } : {}),
    ...(bcc ? { bcc: addresses(bcc, 'bcc.example') } : {}),
    subject: 'hi',
    text: 'hi',
  });

  it('11 sends to 50 recipients each (and with cc and bcc), 60 at once, under a $0.01 cap', async () => {
    for (const body of [email(50), email(50, 50, 50)]) {
      const { resend, proxy, key, post } = await setup(0.01);
      const answers = await Promise.all(Array.from({ length: 60 }, () => post('/emails', body)));
      // One of two by design: which concurrent call wins a reservation depends on timing.
      expect(answers.every((answer) => answer.status === 200 || answer.status === 429)).toBe(true);
      expect(resend.ledger.totalUsd).toBeLessThanOrEqual(0.01);
      expect((await spend(proxy, key.key_id)).spent_usd).toBeGreaterThanOrEqual(resend.ledger.totalUsd);
    }
  });

  it('a batch of 100 emails of 150 recipients each is priced as 15,000 emails', async () => {
    const { resend, post } = await setup(1);
    const batch = Array.from({ length: 100 }, () => email(50, 50, 50));
    const response = await post('/emails/batch', batch);
    expect(response.status).toBe(429);
    expect(resend.received).toHaveLength(0);
  });

  it('refuses /broadcasts/*/send until the operator gives it a cost rule', async () => {
    const { resend, post } = await setup(10, ['POST /broadcasts/*/send']);
    const response = await post('/broadcasts/b_1/send', {});
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('request_not_priceable');
    expect(resend.received).toHaveLength(0);
  });
});

describe('issue 17: stripe charges still price from the request (stand-in Stripe)', () => {
  it('60 concurrent charges at one key stop at the cap', async () => {
    const stripe = await startStripeStandIn();
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: stripe.url } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 25,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const answers = await Promise.all(Array.from({ length: 60 }, () => stripeCharge(proxy, key.vault_key, 300, {})));
    expect(answers.filter((answer) => answer.status === 200)).toHaveLength(8);
    expect((await spend(proxy, key.key_id)).spent_usd).toBe(24);
  });
});
