import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

describe('store failures fail closed', () => {
  it('answers 503 store_unavailable and forwards nothing when the store is gone', async () => {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 2, allowed_endpoints: ['POST /v1/payment_intents'] });
    await proxy.app.keybrake.store.close();

    const response = await stripeCharge(proxy, key.vault_key, 100);
    expect(response.status).toBe(503);
    expect((await json(response)).error.code).toBe('store_unavailable');
    expect(vendor.received).toHaveLength(0);
    const issue = await proxy.admin('POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['GET /v1/customers'],
      expires_in: '1h',
    });
    expect(issue.status).toBe(503);
    expect(issue.body.error.code).toBe('store_unavailable');
    const ready = await proxy.call('/readyz');
    expect(ready.status).toBe(503);
    expect((await proxy.call('/healthz')).status).toBe(200);
  });

  it('answers 503 when the store becomes unwritable: nothing forwarded', async () => {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 2, allowed_endpoints: ['POST /v1/payment_intents'] });
    // Another process holds the write lock past the busy timeout: the reservation cannot commit.
    const locker = new Database(join(proxy.dataDir, 'keybrake.sqlite3'));
    locker.pragma('busy_timeout = 0');
    locker.exec('BEGIN IMMEDIATE');
    try {
      const response = await stripeCharge(proxy, key.vault_key, 100);
      expect(response.status).toBe(503);
      expect((await json(response)).error.code).toBe('store_unavailable');
      expect(vendor.received).toHaveLength(0);
    } finally {
      locker.exec('ROLLBACK');
      locker.close();
    }
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
  }, 20_000);
});
