import { describe, expect, it } from 'vitest';
import { json, stripeMockProxy, stripeCharge } from './helpers.js';

/** $1.00 to $5.00 in whole cents, deterministic per call. */
const amountOf = (i: number) => 100 + ((i * 7919) % 401);

describe('cap reservations under concurrency (stripe-mock)', () => {
  it('2,000 concurrent calls at one key: forwarded spend never exceeds the cap and stops within one call of it', async () => {
    const proxy = await stripeMockProxy();
    const capUsd = 300;
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: capUsd,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 2000 }, async (_, i) => {
        const response = await stripeCharge(proxy, key.vault_key, amountOf(i));
        const body = await json(response);
        return { i, status: response.status, capHit: response.headers.get('x-keybrake-cap-hit'), body };
      }),
    );
    const elapsedMs = performance.now() - started;
    const forwarded = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(forwarded.length + refused.length).toBe(2000);
    expect(refused.every((r) => r.capHit === 'true' && r.body.error.code === 'cap_exhausted')).toBe(true);

    const chargedCents = forwarded.reduce((sum, r) => sum + (r.body.amount as number), 0);
    expect(chargedCents).toBeLessThanOrEqual(capUsd * 100);
    // Reservations only grow here (each settles at its estimate), so every refused call was
    // refused because it did not fit in what was left at the end: the cap is used up to within one call.
    const smallestRefused = Math.min(...refused.map((r) => amountOf(r.i)));
    expect(capUsd * 100 - chargedCents).toBeLessThan(smallestRefused);

    const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBeCloseTo(chargedCents / 100, 6);
    expect(state.reserved_usd).toBe(0);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls).toHaveLength(2000);
    expect((await proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: 2000 });

    console.log(
      `[figures] 2000 concurrent calls, cap $${capUsd}: forwarded ${forwarded.length} ($${(chargedCents / 100).toFixed(2)}), ` +
        `refused ${refused.length} with 429, left unspent $${((capUsd * 100 - chargedCents) / 100).toFixed(2)} ` +
        `(smallest refused call $${(smallestRefused / 100).toFixed(2)}), ${elapsedMs.toFixed(0)} ms, ` +
        `${((2000 / elapsedMs) * 1000).toFixed(0)} calls/s`,
    );
  });

  it("children's concurrent spend counts against their parent's cap", async () => {
    const proxy = await stripeMockProxy();
    const parent = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const children = await Promise.all(
      [1, 2, 3].map(() =>
        proxy.issueKey({
          vendor: 'stripe',
          usd_cap: 40,
          allowed_endpoints: ['POST /v1/payment_intents'],
          parent_key_id: parent.key_id,
        }),
      ),
    );
    const results = await Promise.all(
      Array.from({ length: 300 }, async (_, i) => {
        const child = children[i % 3]!;
        const response = await stripeCharge(proxy, child.vault_key, amountOf(i));
        return { child: child.key_id, status: response.status, amount: amountOf(i) };
      }),
    );
    const forwardedCents = results.filter((r) => r.status === 200).reduce((sum, r) => sum + r.amount, 0);
    expect(forwardedCents).toBeLessThanOrEqual(5000);
    expect(forwardedCents).toBeGreaterThan(5000 - 500);
    const parentState = (await proxy.admin('GET', `/vault/keys/${parent.key_id}`)).body;
    expect(parentState.spent_usd).toBeCloseTo(forwardedCents / 100, 6);
    for (const child of children) {
      const childCents = results
        .filter((r) => r.child === child.key_id && r.status === 200)
        .reduce((sum, r) => sum + r.amount, 0);
      expect((await proxy.admin('GET', `/vault/keys/${child.key_id}`)).body.spent_usd).toBeCloseTo(childCents / 100, 6);
    }
  });
});

describe('daily cap (stripe-mock)', () => {
  it('resets daily_usd_cap at 00:00 UTC while usd_cap never resets', async () => {
    const proxy = await stripeMockProxy({ startAt: Date.parse('2026-11-22T23:58:00Z') });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      daily_usd_cap: 10,
      usd_cap: 25,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '3d',
    });
    expect((await stripeCharge(proxy, key.vault_key, 600)).status).toBe(200);
    expect((await stripeCharge(proxy, key.vault_key, 400)).status).toBe(200);
    expect((await stripeCharge(proxy, key.vault_key, 1)).status).toBe(429);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.remaining_usd).toBe(0);

    proxy.advance(3 * 60_000); // 00:01 UTC the next day
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      remaining_usd: 10,
      spent_usd: 10,
      spent_today_usd: 0,
    });
    expect((await stripeCharge(proxy, key.vault_key, 1000)).status).toBe(200);
    expect((await stripeCharge(proxy, key.vault_key, 1)).status).toBe(429);

    proxy.advance(24 * 3600_000);
    expect((await stripeCharge(proxy, key.vault_key, 600)).status).toBe(429); // 20 + 6 > 25 lifetime
    expect((await stripeCharge(proxy, key.vault_key, 500)).status).toBe(200);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 25,
      remaining_usd: 0,
    });
  });
});
