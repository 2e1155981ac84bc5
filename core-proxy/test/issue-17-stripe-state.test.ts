import { describe, expect, it } from 'vitest';
import { json, startProxy } from './helpers.js';
import { startStripeStandIn } from './stand-in-vendors.js';

const PI_ENDPOINTS = [
  'POST /v1/payment_intents',
  'POST /v1/payment_intents/*',
  'POST /v1/payment_intents/*/confirm',
  'POST /v1/payment_intents/*/capture',
  'POST /v1/payment_intents/*/increment_authorization',
  'POST /v1/refunds',
];

/** Issue 17: Stripe calls priced from the PaymentIntent they act on, tracked per key family. */
describe('issue 17: Stripe object state (stand-in Stripe that bills as Stripe documents)', () => {
  async function setup(cap: number, env: Record<string, string> = {}) {
    const stripe = await startStripeStandIn();
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: stripe.url, ...env } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: cap, allowed_endpoints: PI_ENDPOINTS });
    const post = (path: string, params: Record<string, string> = {}) =>
      proxy.call(`/stripe${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params).toString(),
      });
    const spent = async () => (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd as number;
    return { stripe, proxy, key, post, spent };
  }

  it('an amount raised by an update is what a confirm reserves: $5,000 never moves under a $1 cap', async () => {
    const { stripe, post, spent } = await setup(1);
    const created = await json(await post('/v1/payment_intents', { amount: '50', currency: 'usd' }));
    expect((await post(`/v1/payment_intents/${created.id}`, { amount: '500000' })).status).toBe(200);
    const confirm = await post(`/v1/payment_intents/${created.id}/confirm`);
    expect(confirm.status).toBe(429);
    expect(stripe.ledger.totalUsd).toBe(0);
    // Lowered again, the confirm fits, and the payment is counted once.
    expect((await post(`/v1/payment_intents/${created.id}`, { amount: '80' })).status).toBe(200);
    expect((await post(`/v1/payment_intents/${created.id}/confirm`)).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBe(0.8);
    expect(await spent()).toBe(0.8);
  });

  it('increment_authorization then capture: a $900 capture never moves under a $10 cap', async () => {
    const { stripe, post, spent } = await setup(10);
    const created = await json(
      await post('/v1/payment_intents', { amount: '10', currency: 'usd', capture_method: 'manual', confirm: 'true' }),
    );
    const increment = await post(`/v1/payment_intents/${created.id}/increment_authorization`, { amount: '90000' });
    expect(increment.status).toBe(429);
    expect((await post(`/v1/payment_intents/${created.id}/capture`)).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBe(0.1);
    expect(await spent()).toBe(0.1);
    // Within the cap, an increment books the difference, and its capture nothing more.
    const second = await json(
      await post('/v1/payment_intents', { amount: '100', currency: 'usd', capture_method: 'manual', confirm: 'true' }),
    );
    expect((await post(`/v1/payment_intents/${second.id}/increment_authorization`, { amount: '500' })).status).toBe(
      200,
    );
    expect((await post(`/v1/payment_intents/${second.id}/capture`, { amount_to_capture: '500' })).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBe(5.1);
    expect(await spent()).toBeCloseTo(5.1, 6);
  });

  it('60 concurrent updates and confirms on one PaymentIntent never move more than the cap', async () => {
    const { stripe, post, spent } = await setup(1);
    const created = await json(await post('/v1/payment_intents', { amount: '50', currency: 'usd' }));
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        i % 2 === 0
          ? post(`/v1/payment_intents/${created.id}`, { amount: '500000' })
          : post(`/v1/payment_intents/${created.id}/confirm`),
      ),
    );
    const statuses = answers.map((answer) => answer.status);
    // Calls on one object are serialized: a second one in flight is 409 object_in_use. Which answer
    // each call gets depends on which one holds the object when it arrives (by design): a winning
    // update 200, a confirm over the cap 429, one the proxy cannot price 400, the others 409.
    expect(statuses.every((status) => [200, 400, 409, 429].includes(status))).toBe(true);
    expect(stripe.ledger.totalUsd).toBeLessThanOrEqual(1);
    expect(await spent()).toBeGreaterThanOrEqual(stripe.ledger.totalUsd);
  });

  it('refuses a call on a PaymentIntent the proxy has not seen, unless read-before-write is on', async () => {
    const refused = await setup(100);
    const elsewhere = refused.stripe.createDirectly(5000);
    const response = await refused.post(`/v1/payment_intents/${elsewhere}/confirm`);
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('request_not_priceable');
    expect(refused.stripe.ledger.totalUsd).toBe(0);

    const reading = await setup(30, { KEYBRAKE_STRIPE_READ_BEFORE_WRITE: '1' });
    const big = reading.stripe.createDirectly(5000);
    expect((await reading.post(`/v1/payment_intents/${big}/confirm`)).status).toBe(429);
    const small = reading.stripe.createDirectly(2000);
    expect((await reading.post(`/v1/payment_intents/${small}/confirm`)).status).toBe(200);
    expect(reading.stripe.ledger.totalUsd).toBe(20);
    expect(await reading.spent()).toBe(20);
  });

  it('a refund reserves its amount, or the whole PaymentIntent', async () => {
    const { stripe, post, spent } = await setup(12);
    const paid = await json(await post('/v1/payment_intents', { amount: '500', currency: 'usd', confirm: 'true' }));
    expect((await post('/v1/refunds', { payment_intent: paid.id })).status).toBe(200);
    expect(await spent()).toBe(10);
    expect((await post('/v1/refunds', { payment_intent: paid.id })).status).toBe(429);
    expect((await post('/v1/refunds', { payment_intent: paid.id, amount: '150' })).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBe(11.5);
    expect(await spent()).toBe(11.5);
  });
});
