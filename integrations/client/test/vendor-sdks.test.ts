import Stripe from 'stripe';
import twilio from 'twilio';
import { Resend } from 'resend';
import { describe, expect, it } from 'vitest';
import { sendJson, startFakeVendor, startProxy, stripeMockProxy } from '../../../core-proxy/test/helpers.js';
import { CapExhaustedError, KeybrakeApiError, isCapHit, keybrakeRefusal } from '../src/index.js';
import { resendOptions } from '../src/resend.js';
import { stripeOptions } from '../src/stripe.js';
import { TWILIO_PLACEHOLDER_SID, twilioOptions } from '../src/twilio.js';
import { startDroppingRelay } from './dropping-proxy.js';

const paymentIntents = ['POST /v1/payment_intents'];

describe('the official stripe SDK through the proxy (stripe-mock)', () => {
  it('charges with only the key and the base URL changed', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 50, allowed_endpoints: paymentIntents });
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url));
    const intent = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd' });
    expect(intent).toMatchObject({ object: 'payment_intent', amount: 2000 });
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(20);
  });

  it('surfaces a cap hit as an error isCapHit recognises, never retried by the SDK', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: paymentIntents });
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 3 }));
    const error = await stripe.paymentIntents.create({ amount: 2000, currency: 'usd' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Stripe.errors.StripeError);
    expect((error as Stripe.errors.StripeError).statusCode).toBe(429);
    expect(isCapHit(error)).toBe(true);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { reason: string }) => c.reason)).toEqual(['cap_exhausted']);
  });

  it("replays the SDK's own retry (same Idempotency-Key) after a dropped response instead of charging twice", async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 50, allowed_endpoints: paymentIntents });
    const relay = await startDroppingRelay(proxy.url);
    const stripe = new Stripe(key.vault_key, stripeOptions(relay.url, { maxNetworkRetries: 2 }));
    const intent = await stripe.paymentIntents.create({ amount: 1500, currency: 'usd' });
    expect(intent.amount).toBe(1500);
    expect(relay.dropped()).toBe(1);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { outcome: string }) => c.outcome)).toEqual(['forwarded', 'replayed']);
    expect(calls[0].idempotency_key).toBeTruthy();
    expect(calls[1].idempotency_key).toBe(calls[0].idempotency_key);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(15);
  });

  it('surfaces revocation as an authentication error', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 50, allowed_endpoints: paymentIntents });
    await proxy.admin('DELETE', `/vault/keys/${key.key_id}`);
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url));
    const error = await stripe.paymentIntents.create({ amount: 100, currency: 'usd' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    expect(isCapHit(error)).toBe(false);
    expect(keybrakeRefusal(error)).toBe('vault_key_revoked');
  });

  it('surfaces a tainted key refused on a money-moving endpoint as a refusal keybrakeRefusal names', async () => {
    const proxy = await stripeMockProxy();
    const parent = await proxy.issueKey({ vendor: 'stripe', usd_cap: 50, allowed_endpoints: paymentIntents });
    const child = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: paymentIntents,
      parent_key_id: parent.key_id,
      tainted: true,
    });
    const stripe = new Stripe(child.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 2 }));
    const error = await stripe.paymentIntents.create({ amount: 100, currency: 'usd' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Stripe.errors.StripePermissionError);
    expect(keybrakeRefusal(error)).toBe('tainted_request_refused');
    expect(isCapHit(error)).toBe(false);
    // The untainted parent still charges; the SDK did not retry the refusal.
    await new Stripe(parent.vault_key, stripeOptions(proxy.url)).paymentIntents.create({
      amount: 100,
      currency: 'usd',
    });
    const { calls } = (await proxy.admin('GET', `/vault/keys/${child.key_id}/calls`)).body;
    expect(calls).toMatchObject([{ outcome: 'blocked', reason: 'tainted_request_refused', tainted: true }]);
  });
});

/** Twilio has no mock server that runs here: a fake vendor of our own plays api.twilio.com. */
describe('the official twilio SDK through the proxy (fake vendor)', () => {
  async function setup(status = 201, extraHeaders: Record<string, string> = {}) {
    const vendor = await startFakeVendor((request, response) =>
      status === 201
        ? sendJson(response, 201, {
            sid: `SM${request.url.length}`,
            status: 'queued',
            price: null,
            num_segments: '1',
            body: new URLSearchParams(request.body).get('Body'),
          })
        : sendJson(response, status, { code: 20429, message: 'Too Many Requests', status }, extraHeaders),
    );
    const proxy = await startProxy({
      env: { KEYBRAKE_TWILIO_BASE_URL: vendor.url, KEYBRAKE_TWILIO_SEGMENT_USD: '0.01' },
    });
    return { vendor, proxy };
  }
  const messages = ['POST /2010-04-01/Accounts/*/Messages.json'];

  it('sends a text with only the credentials and the HTTP client changed', async () => {
    const { vendor, proxy } = await setup();
    const key = await proxy.issueKey({ vendor: 'twilio', usd_cap: 1, allowed_endpoints: messages });
    const client = twilio(TWILIO_PLACEHOLDER_SID, key.vault_key, twilioOptions(proxy.url));
    const message = await client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'hello' });
    expect(message.status).toBe('queued');
    expect(vendor.received[0]?.url).toBe(`/2010-04-01/Accounts/${proxy.secrets.TWILIO_ACCOUNT_SID}/Messages.json`);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(0.01, 6);
  });

  it('throws CapExhaustedError on a cap hit, never retried even with autoRetry', async () => {
    const { vendor, proxy } = await setup();
    const key = await proxy.issueKey({ vendor: 'twilio', usd_cap: 0.015, allowed_endpoints: messages });
    const client = twilio(TWILIO_PLACEHOLDER_SID, key.vault_key, twilioOptions(proxy.url, { autoRetry: true }));
    await client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'one' });
    const error = await client.messages
      .create({ to: '+15005550006', from: '+15005550001', body: 'two' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CapExhaustedError);
    expect(isCapHit(error)).toBe(true);
    expect(vendor.received).toHaveLength(1);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls).toHaveLength(2);
  });

  it("retries Twilio's own 429 as the SDK would, and it is not a cap hit", async () => {
    const { vendor, proxy } = await setup(429);
    const key = await proxy.issueKey({ vendor: 'twilio', usd_cap: 1, allowed_endpoints: messages });
    const client = twilio(
      TWILIO_PLACEHOLDER_SID,
      key.vault_key,
      twilioOptions(proxy.url, { autoRetry: true, maxRetries: 2, maxRetryDelay: 50 }),
    );
    const error = await client.messages
      .create({ to: '+15005550006', from: '+15005550001', body: 'x' })
      .catch((e: unknown) => e);
    expect((error as { status: number }).status).toBe(429);
    expect(isCapHit(error)).toBe(false);
    expect(vendor.received).toHaveLength(3);
  });

  it('surfaces revocation as a 401 RestException', async () => {
    const { proxy } = await setup();
    const key = await proxy.issueKey({ vendor: 'twilio', usd_cap: 1, allowed_endpoints: messages });
    await proxy.admin('DELETE', `/vault/keys/${key.key_id}`);
    const client = twilio(TWILIO_PLACEHOLDER_SID, key.vault_key, twilioOptions(proxy.url));
    const error = await client.messages
      .create({ to: '+15005550006', from: '+15005550001', body: 'x' })
      .catch((e: unknown) => e);
    expect((error as { status: number }).status).toBe(401);
    expect(isCapHit(error)).toBe(false);
    expect(error).toBeInstanceOf(KeybrakeApiError);
    expect(keybrakeRefusal(error)).toBe('vault_key_revoked');
  });

  it("names a tainted key's refusal, and leaves Twilio's own 403 alone", async () => {
    const { vendor, proxy } = await setup(403);
    const key = await proxy.issueKey({ vendor: 'twilio', usd_cap: 1, allowed_endpoints: messages, tainted: true });
    const tainted = twilio(TWILIO_PLACEHOLDER_SID, key.vault_key, twilioOptions(proxy.url));
    const send = (client: ReturnType<typeof twilio>) =>
      client.messages.create({ to: '+15005550006', from: '+15005550001', body: 'x' }).catch((e: unknown) => e);
    expect(keybrakeRefusal(await send(tainted))).toBe('tainted_request_refused');
    expect(vendor.received).toHaveLength(0);
    const clean = await proxy.issueKey({ vendor: 'twilio', usd_cap: 1, allowed_endpoints: messages });
    const vendors403 = await send(twilio(TWILIO_PLACEHOLDER_SID, clean.vault_key, twilioOptions(proxy.url)));
    expect((vendors403 as { status: number }).status).toBe(403);
    expect(keybrakeRefusal(vendors403)).toBeUndefined();
  });
});

/** Resend has no mock server that runs here: a fake vendor of our own plays api.resend.com. */
describe('the official resend SDK through the proxy (fake vendor)', () => {
  async function setup() {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'email_123' }));
    const proxy = await startProxy({ env: { KEYBRAKE_RESEND_BASE_URL: vendor.url, KEYBRAKE_RESEND_EMAIL_USD: '0.4' } });
    const key = await proxy.issueKey({ vendor: 'resend', usd_cap: 1, allowed_endpoints: ['POST /emails'] });
    return { vendor, proxy, key, resend: new Resend(key.vault_key, resendOptions(proxy.url)) };
  }
  const email = { from: 'agent@example.com', to: 'customer@example.com', subject: 'Receipt', text: 'Thanks' };

  it('sends an email, then reports a cap hit isCapHit recognises', async () => {
    const { vendor, proxy, key, resend } = await setup();
    expect((await resend.emails.send(email)).data).toEqual({ id: 'email_123' });
    expect(vendor.received[0]?.headers.authorization).toBe(`Bearer ${proxy.secrets.RESEND_API_KEY}`);
    await resend.emails.send(email);
    const capped = await resend.emails.send(email);
    expect(capped.data).toBeNull();
    expect(isCapHit(capped)).toBe(true);
    expect(isCapHit(capped.error)).toBe(true);
    expect(vendor.received).toHaveLength(2);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(0.8, 6);
  });

  it('reports revocation as an error that is not a cap hit', async () => {
    const { proxy, key, resend } = await setup();
    await proxy.admin('DELETE', `/vault/keys/${key.key_id}`);
    const result = await resend.emails.send(email);
    expect(result.data).toBeNull();
    expect(isCapHit(result)).toBe(false);
    expect((result.error as unknown as { error: { code: string } }).error.code).toBe('vault_key_revoked');
    expect(keybrakeRefusal(result)).toBe('vault_key_revoked');
  });

  it("reports a tainted request's refusal as one keybrakeRefusal names", async () => {
    const { vendor, proxy, key } = await setup();
    await proxy.admin('POST', `/vault/keys/${key.key_id}/taint`);
    const result = await new Resend(key.vault_key, resendOptions(proxy.url)).emails.send(email);
    expect(result.data).toBeNull();
    expect(keybrakeRefusal(result)).toBe('tainted_request_refused');
    expect(vendor.received).toHaveLength(0);
  });
});

describe("issue 24: the proxy's header decides a cap hit, not a body that says cap_exhausted", () => {
  it("a Stripe SDK error from the vendor's own 429 whose body code is cap_exhausted is not a cap hit (fake vendor)", async () => {
    // Stripe's own answer (a fake vendor of ours: stripe-mock never answers 429), with the same body code as ours.
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(
        response,
        429,
        { error: { type: 'invalid_request_error', code: 'cap_exhausted', message: 'cap_exhausted' } },
        { 'stripe-should-retry': 'false' },
      ),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 50, allowed_endpoints: paymentIntents });
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
    const error = await stripe.paymentIntents.create({ amount: 100, currency: 'usd' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Stripe.errors.StripeError);
    expect((error as Stripe.errors.StripeError).statusCode).toBe(429);
    expect((error as Stripe.errors.StripeError).code).toBe('cap_exhausted');
    expect(vendor.received).toHaveLength(1);
    expect(isCapHit(error)).toBe(false);
    expect(keybrakeRefusal(error)).toBeUndefined();
  });

  it('a Stripe error with a Keybrake body code but headers without ours is neither a cap hit nor a refusal', () => {
    const body = { error: { type: 'invalid_request_error' as const, code: 'cap_exhausted', message: 'cap_exhausted' } };
    const vendors = Stripe.errors.StripeError.generate({
      ...body.error,
      statusCode: 429,
      headers: { 'retry-after': '1' },
    });
    expect(isCapHit(vendors)).toBe(false);
    const tainted = Stripe.errors.StripeError.generate({
      type: 'invalid_request_error' as const,
      code: 'tainted_request_refused',
      message: 'x',
      statusCode: 403,
      headers: {},
    });
    expect(keybrakeRefusal(tainted)).toBeUndefined();
    const capped = Stripe.errors.StripeError.generate({
      ...body.error,
      statusCode: 429,
      headers: { 'x-keybrake-cap-hit': 'true' },
    });
    expect(isCapHit(capped)).toBe(true);
  });
});
