import { describe, expect, it } from 'vitest';
import { json, stripeMockProxy, stripeCharge } from './helpers.js';

describe('proxy to stripe-mock', () => {
  it('charges with the real secret, settles the cost and audits the call', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const response = await stripeCharge(proxy, key.vault_key, 2000, { 'idempotency-key': 'order-1' });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-keybrake-key-id')).toBe(key.key_id);
    const body = await json(response);
    expect(body).toMatchObject({ object: 'payment_intent', amount: 2000, currency: 'usd' });

    const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state).toMatchObject({ spent_usd: 20, reserved_usd: 0, remaining_usd: 80 });

    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      method: 'POST',
      path: '/v1/payment_intents',
      outcome: 'forwarded',
      reason: null,
      status: 200,
      cost_usd: 20,
      vendor_request_id: 'req_123',
      idempotency_key: 'order-1',
      agent_run_label: key.agent_run_label,
      tainted: false,
    });
    expect(Date.parse(calls[0].at)).not.toBeNaN();
    const verify = (await proxy.admin('GET', '/audit/verify')).body;
    expect(verify).toMatchObject({ ok: true, records: 1 });
    expect(verify.head).toMatch(/^[0-9a-f]{64}$/);
  });

  it('passes a vendor error through and settles it at 0', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const response = await proxy.call('/stripe/v1/payment_intents', {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=500&currency=usd&not_a_param=1',
    });
    expect(response.status).toBe(400);
    expect((await json(response)).error.type).toBe('invalid_request_error');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({
      spent_usd: 0,
      reserved_usd: 0,
    });
  });

  it('runs the contract checks in order, forwarding nothing that fails one', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const resendKey = await proxy.issueKey({ vendor: 'resend', usd_cap: 10, allowed_endpoints: ['POST /emails'] });
    const revoked = await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: ['GET /v1/customers'] });
    await proxy.admin('DELETE', `/vault/keys/${revoked.key_id}`);

    const cases: [string, () => Promise<Response>, number, string][] = [
      [
        'no key',
        () => proxy.call('/stripe/v1/payment_intents', { method: 'POST', body: 'amount=1' }),
        401,
        'invalid_vault_key',
      ],
      ['unknown key', () => stripeCharge(proxy, 'kb_vk_unknown', 100), 401, 'invalid_vault_key'],
      [
        'revoked key (also not allowed: revocation comes first)',
        () => stripeCharge(proxy, revoked.vault_key, 100),
        401,
        'vault_key_revoked',
      ],
      ['key of another vendor', () => stripeCharge(proxy, resendKey.vault_key, 100), 403, 'vendor_mismatch'],
      [
        'endpoint not allowed',
        () =>
          proxy.call('/stripe/v1/charges', {
            method: 'POST',
            headers: { authorization: `Bearer ${key.vault_key}` },
            body: 'amount=100',
          }),
        403,
        'endpoint_not_allowed',
      ],
      [
        'method not allowed',
        () => proxy.call('/stripe/v1/payment_intents', { headers: { authorization: `Bearer ${key.vault_key}` } }),
        403,
        'endpoint_not_allowed',
      ],
      ['over the cap', () => stripeCharge(proxy, key.vault_key, 1001), 429, 'cap_exhausted'],
    ];
    for (const [name, send, status, code] of cases) {
      const response = await send();
      expect(response.status, name).toBe(status);
      expect((await json(response)).error.code, name).toBe(code);
      expect(response.headers.get('x-keybrake-cap-hit'), name).toBe(code === 'cap_exhausted' ? 'true' : null);
    }
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { outcome: string; reason: string }) => [c.outcome, c.reason])).toEqual([
      ['blocked', 'endpoint_not_allowed'],
      ['blocked', 'endpoint_not_allowed'],
      ['blocked', 'cap_exhausted'],
    ]);
    // Every proxied request is audited, even those with no key: 7 records in all.
    expect((await proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: 7 });
  });

  it('refuses an expired key with 401 vault_key_expired', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '90s',
    });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    proxy.advance(91_000);
    const response = await stripeCharge(proxy, key.vault_key, 100);
    expect(response.status).toBe(401);
    expect((await json(response)).error.code).toBe('vault_key_expired');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.status).toBe('expired');
  });

  it('takes revocation into account on the very next call', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    await proxy.admin('DELETE', `/vault/keys/${key.key_id}`);
    const response = await stripeCharge(proxy, key.vault_key, 100);
    expect(response.status).toBe(401);
    expect((await json(response)).error.code).toBe('vault_key_revoked');
  });

  it('converts currencies: configured rates, zero-decimal JPY, refusing unknown ones', async () => {
    const proxy = await stripeMockProxy({ env: { KEYBRAKE_FX_RATES: 'eur=1.10,jpy=0.0070' } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/charges'] });
    const charge = (amount: number, currency: string) =>
      proxy.call('/stripe/v1/charges', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: `amount=${amount}&currency=${currency}&source=tok_visa`,
      });
    expect((await charge(1000, 'eur')).status).toBe(200); // 10.00 EUR = 11.00 USD
    expect((await charge(1000, 'jpy')).status).toBe(200); // 1000 JPY (no minor unit) = 7.00 USD
    const refused = await charge(1000, 'chf');
    expect(refused.status).toBe(400);
    expect((await json(refused)).error.code).toBe('currency_not_supported');
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(18, 6);
  });

  it('refuses tainted requests to money-moving endpoints but lets them read', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/customers'],
    });
    const untrusted = await stripeCharge(proxy, key.vault_key, 100, { 'x-keybrake-provenance': 'untrusted' });
    expect(untrusted.status).toBe(403);
    expect((await json(untrusted)).error.code).toBe('tainted_request_refused');
    const read = await proxy.call('/stripe/v1/customers', {
      headers: { authorization: `Bearer ${key.vault_key}`, 'x-keybrake-provenance': 'untrusted' },
    });
    expect(read.status).toBe(200);
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    await proxy.admin('POST', `/vault/keys/${key.key_id}/taint`);
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(403);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { tainted: boolean }) => c.tainted)).toEqual([true, true, false, true]);
  });
});
