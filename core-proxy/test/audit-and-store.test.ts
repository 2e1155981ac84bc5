import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

describe('audit chain', () => {
  async function withRecords() {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 2, allowed_endpoints: ['POST /v1/payment_intents'] });
    for (let i = 0; i < 4; i += 1) await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': `k${i % 3}` });
    await stripeCharge(proxy, key.vault_key, 100); // cap hit
    await stripeCharge(proxy, 'kb_vk_nope', 100); // unknown key
    return { proxy, key };
  }

  /** Edits the store file behind the running proxy, as an attacker with disk access would. */
  function tamper(dataDir: string, sql: string): void {
    const db = new Database(join(dataDir, 'keybrake.sqlite3'));
    db.exec(sql);
    db.close();
  }

  it('verifies a chain of every outcome and names the first bad record after tampering', async () => {
    const { proxy } = await withRecords();
    const before = (await proxy.admin('GET', '/audit/verify')).body;
    expect(before).toMatchObject({ ok: true, records: 6 });

    tamper(proxy.dataDir, `UPDATE audit SET record = replace(record, '"cost_usd":1', '"cost_usd":0') WHERE seq = 2`);
    expect((await proxy.admin('GET', '/audit/verify')).body).toEqual({
      ok: false,
      records: 1,
      first_bad_seq: 2,
      reason: 'chain_broken',
    });
  });

  it('detects a deleted record and a rewritten hash', async () => {
    const { proxy } = await withRecords();
    tamper(proxy.dataDir, 'DELETE FROM audit WHERE seq = 4');
    expect((await proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: false, first_bad_seq: 4 });
  });

  it('detects a record re-hashed without re-chaining the next one', async () => {
    const { proxy } = await withRecords();
    tamper(proxy.dataDir, `UPDATE audit SET hash = '${'a'.repeat(64)}' WHERE seq = 2`);
    expect((await proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: false, first_bad_seq: 2 });
  });

  it('chains hash_n = sha256(hash_{n-1} || canonical_json(record_n)) from 64 zeros, checkable from outside', async () => {
    const { proxy, key } = await withRecords();
    const { createHash } = await import('node:crypto');
    const { canonicalJson } = await import('../src/audit/canonical-json.js');
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    // Records 1..5 belong to this key and record 6 to no key, so the head is reachable from the calls plus one record.
    let head = '0'.repeat(64);
    for (const call of calls) head = createHash('sha256').update(head).update(canonicalJson(call)).digest('hex');
    const db = new Database(join(proxy.dataDir, 'keybrake.sqlite3'), { readonly: true });
    const last = db.prepare('SELECT record, prev_hash, hash FROM audit WHERE seq = 6').get() as {
      record: string;
      prev_hash: string;
      hash: string;
    };
    db.close();
    expect(last.prev_hash).toBe(head);
    const final = createHash('sha256')
      .update(head)
      .update(canonicalJson(JSON.parse(last.record)))
      .digest('hex');
    expect((await proxy.admin('GET', '/audit/verify')).body.head).toBe(final);
  });
});

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
