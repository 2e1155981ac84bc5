import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { json, startProxy, type TestProxy } from './helpers.js';
import { startLenientVendor, type StandInLedger } from './lenient-vendor.js';

/**
 * Issue 16, part 2: a costed call whose body the proxy could not price was reserved at $0 and
 * forwarded. Each case uses a fresh Stripe key with `usd_cap: 10` in front of a lenient vendor
 * stand-in (a fake of our own) that would charge what it can read: it must be priced (and so hit
 * the cap) or refused with 400 `request_not_priceable`, and reach no vendor either way.
 */
describe('issue 16: a costed call the proxy cannot price reaches no vendor (lenient vendor stand-in)', () => {
  async function setup(): Promise<{ proxy: TestProxy; vendor: StandInLedger }> {
    const vendor = await startLenientVendor();
    const proxy = await startProxy({
      env: {
        KEYBRAKE_STRIPE_BASE_URL: vendor.url,
        KEYBRAKE_RESEND_BASE_URL: vendor.url,
        KEYBRAKE_TWILIO_BASE_URL: vendor.url,
        KEYBRAKE_TWILIO_MMS_USD: '0.022',
        KEYBRAKE_FX_RATES: 'jpy=0.0067,eur=1.1',
      },
    });
    return { proxy, vendor };
  }

  async function stripeKey(proxy: TestProxy): Promise<{ key_id: string; vault_key: string }> {
    return proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/charges'],
    });
  }

  type CallInit = { headers?: Record<string, string>; body?: RequestInit['body'] };

  /** Sends one charge attempt and checks the refusal left no trace at the vendor and no spend. */
  async function expectRefused(
    proxy: TestProxy,
    vendor: StandInLedger,
    key: { key_id: string; vault_key: string },
    path: string,
    init: CallInit,
    expected: { status: number; code: string },
  ): Promise<void> {
    const caseId = randomUUID();
    const response = await proxy.call(path, {
      method: 'POST',
      ...init,
      headers: { authorization: `Bearer ${key.vault_key}`, 'x-case-id': caseId, ...init.headers },
    });
    const body = await json(response);
    expect(body.error?.code, JSON.stringify(body)).toBe(expected.code);
    expect(response.status).toBe(expected.status);
    expect(response.headers.get('x-keybrake-error')).toBe(expected.code);
    expect(vendor.calls.filter((call) => call.caseId === caseId)).toEqual([]);
    const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBe(0);
    expect(state.reserved_usd).toBe(0);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.at(-1)).toMatchObject({ outcome: 'blocked', reason: expected.code, cost_usd: 0 });
  }

  /**
   * A fresh proxy and vendor stand-in, a key from `issue`, and one charge attempt with `init`
   * (or what `init` makes of the key), checked by `expectRefused`.
   */
  async function expectRefusedOnFreshKey(
    issue: (proxy: TestProxy) => Promise<{ key_id: string; vault_key: string }>,
    path: string,
    init: CallInit | ((key: { key_id: string; vault_key: string }) => CallInit),
    expected: { status: number; code: string },
  ): Promise<void> {
    const { proxy, vendor } = await setup();
    const key = await issue(proxy);
    await expectRefused(proxy, vendor, key, path, typeof init === 'function' ? init(key) : init, expected);
  }

  const form = 'application/x-www-form-urlencoded';
  const notPriceable = { status: 400, code: 'request_not_priceable' };
  const capHit = { status: 429, code: 'cap_exhausted' };

  it('a well-formed charge is still priced and forwarded (the control case)', async () => {
    const { proxy, vendor } = await setup();
    const key = await stripeKey(proxy);
    const response = await proxy.call('/stripe/v1/payment_intents', {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': `${form}; charset=utf-8` },
      body: 'amount=500&currency=usd',
    });
    expect(response.status).toBe(200);
    expect(vendor.total()).toBe(5);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(5);
  });

  it('Content-Type "application/x-www-form-urlencoded; x=json" is read as the form it is', async () => {
    await expectRefusedOnFreshKey(
      stripeKey,
      '/stripe/v1/payment_intents',
      { headers: { 'content-type': `${form}; x=json` }, body: 'amount=100000&currency=usd' },
      capHit,
    );
  });

  it('a gzipped form body is refused, not priced from the compressed bytes', async () => {
    await expectRefusedOnFreshKey(
      stripeKey,
      '/stripe/v1/payment_intents',
      {
        headers: { 'content-type': form, 'content-encoding': 'gzip' },
        body: gzipSync('amount=100000&currency=usd'),
      },
      notPriceable,
    );
  });

  it('multipart/form-data (curl -F amount=100000 -F currency=usd) is refused', async () => {
    const multipart = new FormData();
    multipart.append('amount', '100000');
    multipart.append('currency', 'usd');
    await expectRefusedOnFreshKey(stripeKey, '/stripe/v1/payment_intents', { body: multipart }, notPriceable);
  });

  it('the amount in the query string of a POST is priced (and hits the cap)', async () => {
    await expectRefusedOnFreshKey(stripeKey, '/stripe/v1/charges?amount=100000&currency=usd', {}, capHit);
  });

  it('an amount in the body and another in the query is ambiguous', async () => {
    await expectRefusedOnFreshKey(
      stripeKey,
      '/stripe/v1/charges?amount=100000',
      { headers: { 'content-type': form }, body: 'amount=100&currency=usd' },
      notPriceable,
    );
  });

  it('amount=1400&currency=jpy&currency=usd is ambiguous', async () => {
    await expectRefusedOnFreshKey(
      stripeKey,
      '/stripe/v1/payment_intents',
      { headers: { 'content-type': form }, body: 'amount=1400&currency=jpy&currency=usd' },
      notPriceable,
    );
  });

  it('a JSON body repeating "amount" is ambiguous', async () => {
    await expectRefusedOnFreshKey(
      stripeKey,
      '/stripe/v1/payment_intents',
      { headers: { 'content-type': 'application/json' }, body: '{"amount":100,"currency":"usd","amount":100000}' },
      notPriceable,
    );
  });

  describe('twilio Messages.json', () => {
    const path = '/twilio/2010-04-01/Accounts/ACplaceholder/Messages.json';
    async function twilioKey(proxy: TestProxy): Promise<{ key_id: string; vault_key: string }> {
      // Below one MMS ($0.022), above one SMS segment ($0.0083).
      return proxy.issueKey({
        vendor: 'twilio',
        usd_cap: 0.01,
        allowed_endpoints: ['POST /2010-04-01/Accounts/*/Messages.json'],
      });
    }
    const basic = (vaultKey: string): string => `Basic ${Buffer.from(`ACplaceholder:${vaultKey}`).toString('base64')}`;

    it('a MediaUrl in the query string prices the call as an MMS (and hits the cap)', async () => {
      await expectRefusedOnFreshKey(
        twilioKey,
        `${path}?MediaUrl=https%3A%2F%2Fexample.com%2Fa.png`,
        (key) => ({
          headers: { authorization: basic(key.vault_key), 'content-type': form },
          body: 'To=%2B15005550006&Body=hi',
        }),
        capHit,
      );
    });

    it('two Body parameters are ambiguous', async () => {
      await expectRefusedOnFreshKey(
        twilioKey,
        path,
        (key) => ({
          headers: { authorization: basic(key.vault_key), 'content-type': form },
          body: `To=%2B15005550006&Body=hi&Body=${'long '.repeat(100)}`,
        }),
        notPriceable,
      );
    });
  });

  describe('resend /emails/batch', () => {
    async function resendKey(proxy: TestProxy): Promise<{ key_id: string; vault_key: string }> {
      // 100 emails at the default $0.0009 cost $0.09: past this cap.
      return proxy.issueKey({ vendor: 'resend', usd_cap: 0.05, allowed_endpoints: ['POST /emails/batch'] });
    }
    const batch = JSON.stringify(
      Array.from({ length: 100 }, (_, i) => ({
        from: 'a@example.com',
        to: `u${i}@example.com`,
        subject: 's',
        text: 't',
      })),
    );

    it('a batch is priced per email (the control case)', async () => {
      await expectRefusedOnFreshKey(
        resendKey,
        '/resend/emails/batch',
        { headers: { 'content-type': 'application/json' }, body: batch },
        capHit,
      );
    });

    it('a batch with a UTF-8 BOM is priced like the same batch without it', async () => {
      await expectRefusedOnFreshKey(
        resendKey,
        '/resend/emails/batch',
        { headers: { 'content-type': 'application/json' }, body: `\uFEFF${batch}` },
        capHit,
      );
    });

    it('a gzipped batch is refused', async () => {
      await expectRefusedOnFreshKey(
        resendKey,
        '/resend/emails/batch',
        { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(batch) },
        notPriceable,
      );
    });
  });
});
