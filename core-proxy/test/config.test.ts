import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

describe('configuration through the environment (fake vendor)', () => {
  it('reads a vendor secret from NAME_FILE', async () => {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'cus_1' }));
    const secret = `sk_test_${randomBytes(12).toString('hex')}`;
    const file = join(mkdtempSync(join(tmpdir(), 'keybrake-secret-')), 'stripe');
    writeFileSync(file, `${secret}\n`);
    const proxy = await startProxy({
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, STRIPE_SECRET_KEY: '', STRIPE_SECRET_KEY_FILE: file },
    });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: ['GET /v1/customers'] });
    expect(
      (await proxy.call('/stripe/v1/customers', { headers: { authorization: `Bearer ${key.vault_key}` } })).status,
    ).toBe(200);
    expect(vendor.received[0]?.headers.authorization).toBe(`Bearer ${secret}`);
  });

  it('charges configured flat costs and treats them, and configured endpoints, as sensitive to taint', async () => {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'in_1' }));
    const proxy = await startProxy({
      env: {
        KEYBRAKE_STRIPE_BASE_URL: vendor.url,
        KEYBRAKE_COST_RULES: JSON.stringify({ stripe: { 'POST /v1/invoices/*/pay': 40 } }),
        KEYBRAKE_SENSITIVE_ENDPOINTS: JSON.stringify({ stripe: ['POST /v1/refunds'] }),
      },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/invoices/*/pay', 'POST /v1/refunds'],
    });
    const post = (path: string, headers: Record<string, string> = {}) =>
      proxy.call(`/stripe${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, ...headers },
      });
    expect((await post('/v1/invoices/in_1/pay')).status).toBe(200);
    expect((await post('/v1/invoices/in_2/pay')).status).toBe(200);
    const third = await post('/v1/invoices/in_3/pay');
    expect(third.status).toBe(429);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(80);
    for (const path of ['/v1/invoices/in_4/pay', '/v1/refunds']) {
      const tainted = await post(path, { 'x-keybrake-provenance': 'untrusted' });
      expect(tainted.status, path).toBe(403);
      expect((await json(tainted)).error.code).toBe('tainted_request_refused');
    }
    expect(vendor.received).toHaveLength(2);
  });

  it('counts requests, spend and cap hits in /metrics', async () => {
    const vendor = await startFakeVendor((request, response) =>
      sendJson(response, 200, {
        id: 'pi_1',
        amount: Number(new URLSearchParams(request.body).get('amount')),
        currency: 'usd',
      }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 5, allowed_endpoints: ['POST /v1/payment_intents'] });
    await stripeCharge(proxy, key.vault_key, 400);
    await stripeCharge(proxy, key.vault_key, 400);
    const metrics = await (await proxy.call('/metrics')).text();
    expect(metrics).toMatch(/keybrake_proxy_requests_total\{vendor="stripe",outcome="forwarded",reason=""\} 1/);
    expect(metrics).toMatch(
      /keybrake_proxy_requests_total\{vendor="stripe",outcome="blocked",reason="cap_exhausted"\} 1/,
    );
    expect(metrics).toMatch(/keybrake_cap_hits_total\{vendor="stripe"\} 1/);
    expect(metrics).toMatch(/keybrake_spend_usd_total\{vendor="stripe"\} 4/);
    expect(metrics).toMatch(/keybrake_upstream_duration_seconds_count\{vendor="stripe",status_class="2xx"\} 1/);
  });
});
