import { describe, expect, it } from 'vitest';
import { ERROR_TABLE } from '../src/errors.js';
import { json, sendJson, startFakeVendor, startProxy, type TestProxy } from './helpers.js';

/**
 * Issue 20: one message per error code, whichever check (the proxy's own, or the store's, inside
 * the reservation) refuses the call. On Redis the proxy caches a key's immutable record, so a
 * taint or revocation made after the first call is found by the store's check; on the embedded
 * store by the proxy's. Against a fake vendor of our own that counts what reached it.
 */
describe('issue 20: one message per refusal, whichever check refuses (fake vendor)', () => {
  async function setup(): Promise<{ proxy: TestProxy; received: unknown[] }> {
    const vendor = await startFakeVendor((_request, response) => {
      sendJson(response, 200, { id: 'pi_fake', amount: 100, currency: 'usd' }, { 'request-id': 'req_fake' });
    });
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    return { proxy, received: vendor.received };
  }

  function charge(proxy: TestProxy, vaultKey: string, headers: Record<string, string> = {}): Promise<Response> {
    return proxy.call('/stripe/v1/payment_intents', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${vaultKey}`,
        'content-type': 'application/x-www-form-urlencoded',
        ...headers,
      },
      body: 'amount=100&currency=usd',
    });
  }

  async function refusal(response: Response): Promise<{ status: number; code: string; message: string }> {
    const body = await json(response);
    expect(response.headers.get('x-keybrake-error')).toBe(body.error.code);
    return { status: response.status, code: body.error.code, message: body.error.message };
  }

  it('tainted_request_refused says the same for a provenance header, a tainted key, and a key tainted after its first call', async () => {
    const { proxy, received } = await setup();
    const allowed = ['POST /v1/payment_intents'];
    const expected = {
      status: 403,
      code: 'tainted_request_refused',
      message: ERROR_TABLE.tainted_request_refused.message,
    };

    const clean = await proxy.issueKey({ vendor: 'stripe', usd_cap: 5, allowed_endpoints: allowed, expires_in: '1h' });
    expect(await refusal(await charge(proxy, clean.vault_key, { 'x-keybrake-provenance': 'untrusted' }))).toEqual(
      expected,
    );

    const tainted = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 5,
      allowed_endpoints: allowed,
      expires_in: '1h',
      tainted: true,
    });
    expect(await refusal(await charge(proxy, tainted.vault_key))).toEqual(expected);

    // Warm the proxy's view of the key with a forwarded call, then taint it.
    const later = await proxy.issueKey({ vendor: 'stripe', usd_cap: 5, allowed_endpoints: allowed, expires_in: '1h' });
    expect((await charge(proxy, later.vault_key)).status).toBe(200);
    expect((await proxy.admin('POST', `/vault/keys/${later.key_id}/taint`)).status).toBe(200);
    expect(await refusal(await charge(proxy, later.vault_key))).toEqual(expected);

    expect(received).toHaveLength(1);
  });

  it('vault_key_revoked says the same for a revoked key, a key revoked after its first call, and a revoked parent', async () => {
    const { proxy, received } = await setup();
    const allowed = ['POST /v1/payment_intents'];
    const expected = { status: 401, code: 'vault_key_revoked', message: ERROR_TABLE.vault_key_revoked.message };

    const parent = await proxy.issueKey({ vendor: 'stripe', usd_cap: 5, allowed_endpoints: allowed, expires_in: '1h' });
    const child = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 5,
      allowed_endpoints: allowed,
      expires_in: '1h',
      parent_key_id: parent.key_id,
    });
    expect((await charge(proxy, child.vault_key)).status).toBe(200);
    expect((await proxy.admin('DELETE', `/vault/keys/${parent.key_id}`)).status).toBe(200);
    expect(await refusal(await charge(proxy, parent.vault_key))).toEqual(expected);
    expect(await refusal(await charge(proxy, child.vault_key))).toEqual(expected);
    // A check after the key's state (here: the allowlist) still reports the revocation first.
    const other = await proxy.call('/stripe/v1/refunds', {
      method: 'POST',
      headers: { authorization: `Bearer ${child.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'payment_intent=pi_fake',
    });
    expect(await refusal(other)).toEqual(expected);

    const calls = (await proxy.admin('GET', `/vault/keys/${child.key_id}/calls`)).body.calls;
    expect(calls.map((call: { outcome: string; reason: string | null }) => [call.outcome, call.reason])).toEqual([
      ['forwarded', null],
      ['blocked', 'vault_key_revoked'],
      ['blocked', 'vault_key_revoked'],
    ]);
    expect(received).toHaveLength(1);
  });
});
