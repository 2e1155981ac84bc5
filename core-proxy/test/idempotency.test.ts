import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

/**
 * Idempotency and unknown outcomes need a vendor that keeps state, answers slowly or hangs up:
 * stripe-mock does none of these, so these tests use a fake vendor of our own.
 */
describe('idempotency (fake vendor)', () => {
  async function setup(handler: Parameters<typeof startFakeVendor>[0], env: Record<string, string> = {}) {
    const vendor = await startFakeVendor(handler);
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, ...env } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    return { vendor, proxy, key };
  }
  let counter = 0;
  const paymentIntent = (request: { body: string }, response: Parameters<typeof sendJson>[0]) => {
    counter += 1;
    const amount = Number(new URLSearchParams(request.body).get('amount'));
    sendJson(response, 200, { id: `pi_${counter}`, amount, currency: 'usd' }, { 'request-id': `req_${counter}` });
  };

  it('replays a repeat without calling the vendor or charging the cap again', async () => {
    const { vendor, proxy, key } = await setup(paymentIntent);
    const first = await stripeCharge(proxy, key.vault_key, 1500, { 'idempotency-key': 'charge-a' });
    const firstBody = await first.text();
    const again = await stripeCharge(proxy, key.vault_key, 1500, { 'idempotency-key': 'charge-a' });
    expect(again.status).toBe(200);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('request-id')).toBe(first.headers.get('request-id'));
    expect(await again.text()).toBe(firstBody);
    expect(vendor.received).toHaveLength(1);
    expect(vendor.received[0]?.headers['idempotency-key']).toBe('charge-a');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(15);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { outcome: string; cost_usd: number }) => [c.outcome, c.cost_usd])).toEqual([
      ['forwarded', 15],
      ['replayed', 0],
    ]);
    expect(calls[1].vendor_request_id).toBe(calls[0].vendor_request_id);
  });

  it('refuses the same key with a different body, path or method: 400 idempotency_key_reused', async () => {
    const { vendor, proxy, key } = await setup(paymentIntent);
    await stripeCharge(proxy, key.vault_key, 1500, { 'idempotency-key': 'charge-b' });
    const response = await stripeCharge(proxy, key.vault_key, 9900, { 'idempotency-key': 'charge-b' });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('idempotency_key_reused');
    expect(vendor.received).toHaveLength(1);
  });

  it('scopes idempotency keys per vault key', async () => {
    const { vendor, proxy, key } = await setup(paymentIntent);
    const other = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'shared' });
    const response = await stripeCharge(proxy, other.vault_key, 100, { 'idempotency-key': 'shared' });
    expect(response.headers.get('idempotent-replayed')).toBeNull();
    expect(vendor.received).toHaveLength(2);
  });

  it('answers a repeat while the first is in flight with 409 idempotency_key_in_use', async () => {
    // The vendor holds the first call until the repeat has been answered, and the repeat is sent
    // only once the vendor has the first: in flight for certain, however slow the machine.
    let releaseFirst: () => void = () => undefined;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    let firstArrived: () => void = () => undefined;
    const firstAtVendor = new Promise<void>((resolve) => (firstArrived = resolve));
    const { vendor, proxy, key } = await setup(async (request, response) => {
      firstArrived();
      await firstHeld;
      paymentIntent(request, response);
    });
    const first = stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'slow' });
    await firstAtVendor;
    const second = await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'slow' });
    releaseFirst();
    expect(second.status).toBe(409);
    expect((await json(second)).error.code).toBe('idempotency_key_in_use');
    expect((await first).status).toBe(200);
    expect(vendor.received).toHaveLength(1);
  });

  it('refuses an Idempotency-Key over 255 characters', async () => {
    const { vendor, proxy, key } = await setup(paymentIntent);
    const response = await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'k'.repeat(256) });
    expect(response.status).toBe(400);
    expect((await json(response)).error.code).toBe('invalid_request');
    expect(vendor.received).toHaveLength(0);
  });

  it('does not keep a vendor 5xx: the retry reaches the vendor with the same key', async () => {
    let failures = 1;
    const { vendor, proxy, key } = await setup((request, response) => {
      if (failures-- > 0) return sendJson(response, 500, { error: { type: 'api_error' } });
      paymentIntent(request, response);
    });
    expect((await stripeCharge(proxy, key.vault_key, 700, { 'idempotency-key': 'retry-me' })).status).toBe(500);
    expect((await stripeCharge(proxy, key.vault_key, 700, { 'idempotency-key': 'retry-me' })).status).toBe(200);
    expect(vendor.received.map((r) => r.headers['idempotency-key'])).toEqual(['retry-me', 'retry-me']);
    // Issue 17: the 5xx may have charged, so its reservation stays as unknown spend (as for a timeout).
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 14,
      unknown_usd: 7,
    });
  });

  it("passes a vendor's own 429 through without X-Keybrake-Cap-Hit", async () => {
    const { proxy, key } = await setup((_request, response) =>
      sendJson(response, 429, { error: { type: 'rate_limit' } }, { 'retry-after': '2' }),
    );
    const response = await stripeCharge(proxy, key.vault_key, 100);
    expect(response.status).toBe(429);
    expect(response.headers.get('x-keybrake-cap-hit')).toBeNull();
    expect(response.headers.get('retry-after')).toBe('2');
    expect((await json(response)).error.type).toBe('rate_limit');
  });
});

describe('unknown outcomes (fake vendor)', () => {
  it('keeps the reservation as spent when the vendor hangs up after receiving the call', async () => {
    const vendor = await startFakeVendor((_request, response) => void response.socket?.destroy());
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const response = await stripeCharge(proxy, key.vault_key, 2500, { 'idempotency-key': 'lost' });
    expect(response.status).toBe(502);
    expect((await json(response)).error.code).toBe('upstream_error');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 25,
      reserved_usd: 0,
      unknown_usd: 25,
    });
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls[0]).toMatchObject({ outcome: 'unknown', reason: 'upstream_error', cost_usd: 25 });
    expect(vendor.received).toHaveLength(1);
    // Released claim: a retry goes to the vendor, whose own idempotency decides.
    await stripeCharge(proxy, key.vault_key, 2500, { 'idempotency-key': 'lost' });
    expect(vendor.received).toHaveLength(2);
  });

  it('answers 504 upstream_timeout and keeps the reservation when the vendor does not answer in time', async () => {
    const vendor = await startFakeVendor(async (_request, response) => {
      await sleep(2_000);
      sendJson(response, 200, {});
    });
    const proxy = await startProxy({
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, KEYBRAKE_UPSTREAM_TIMEOUT_MS: '300' },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const response = await stripeCharge(proxy, key.vault_key, 1200);
    expect(response.status).toBe(504);
    expect((await json(response)).error.code).toBe('upstream_timeout');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 12,
      unknown_usd: 12,
    });
  });

  it('releases the reservation when the vendor cannot be reached at all (nothing sent)', async () => {
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: 'http://127.0.0.1:1' } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const response = await stripeCharge(proxy, key.vault_key, 1200);
    expect(response.status).toBe(502);
    expect((await json(response)).error.code).toBe('upstream_unreachable');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 0,
      reserved_usd: 0,
    });
  });
});
