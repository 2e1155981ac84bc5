import { describe, expect, it } from 'vitest';
import { stripeMockProxy, stripeCharge } from '../../../core-proxy/test/helpers.js';
import { CapExhaustedError, KeybrakeApiError, KeybrakeClient, deriveIdempotencyKey, isCapHit } from '../src/index.js';

describe('KeybrakeClient against the real proxy (stripe-mock)', () => {
  async function setup() {
    const proxy = await stripeMockProxy();
    return { proxy, client: new KeybrakeClient({ baseUrl: proxy.url, apiKey: proxy.apiKey }) };
  }

  it('issues, reads, lists calls of, taints and revokes a key', async () => {
    const { proxy, client } = await setup();
    const issued = await client.issueVaultKey({
      vendor: 'stripe',
      usd_cap: 30,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
      agent_run_label: 'client/test',
    });
    expect(issued).toMatchObject({ vendor: 'stripe', usd_cap: 30, agent_run_label: 'client/test' });
    expect((await stripeCharge(proxy, issued.vault_key, 1200)).status).toBe(200);
    expect(await client.getVaultKey(issued.key_id)).toMatchObject({
      status: 'active',
      spent_usd: 12,
      remaining_usd: 18,
    });
    const calls = await client.listCalls(issued.key_id);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ outcome: 'forwarded', cost_usd: 12 });
    expect(await client.taintVaultKey(issued.key_id)).toEqual({ key_id: issued.key_id, tainted: true });
    expect(await client.revokeVaultKey(issued.key_id)).toEqual({ key_id: issued.key_id, status: 'revoked' });
    expect((await client.getVaultKey(issued.key_id)).status).toBe('revoked');
  });

  it('throws KeybrakeApiError with the contract code', async () => {
    const { client } = await setup();
    const invalid = await client
      .issueVaultKey({ vendor: 'stripe', allowed_endpoints: [], expires_in: '1h' })
      .catch((error: unknown) => error);
    expect(invalid).toBeInstanceOf(KeybrakeApiError);
    expect(invalid).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(await client.getVaultKey('key_missing').catch((error: unknown) => error)).toMatchObject({
      status: 404,
      code: 'not_found',
    });
    const wrongKey = new KeybrakeClient({
      baseUrl: (client as unknown as { baseUrl: string }).baseUrl,
      apiKey: 'nope',
    });
    expect(await wrongKey.getVaultKey('key_x').catch((error: unknown) => error)).toMatchObject({
      status: 401,
      code: 'unauthorized',
    });
  });

  it('retries a read refused with 503 store_unavailable, with backoff, then gives up', async () => {
    const { proxy } = await setup();
    let attempts = 0;
    const counting: typeof fetch = (input, init) => {
      attempts += 1;
      return fetch(input, init);
    };
    const client = new KeybrakeClient({
      baseUrl: proxy.url,
      apiKey: proxy.apiKey,
      maxNetworkRetries: 2,
      fetch: counting,
    });
    await proxy.app.keybrake.store.close();
    const error = await client.getVaultKey('key_any').catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, code: 'store_unavailable' });
    expect(attempts).toBe(3);
  });

  it('recognises the cap hit on a raw Response and on its own errors, and nothing else', async () => {
    const { proxy, client } = await setup();
    const issued = await client.issueVaultKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
    });
    const capped = await stripeCharge(proxy, issued.vault_key, 500);
    expect(capped.status).toBe(429);
    expect(isCapHit(capped)).toBe(true);
    expect(isCapHit(new CapExhaustedError())).toBe(true);
    expect(isCapHit(new KeybrakeApiError(429, 'rate_limited', 'vendor 429'))).toBe(false);
    expect(isCapHit(new Response('{}', { status: 429 }))).toBe(false);
    expect(isCapHit(new Error('cap_exhausted'))).toBe(false);
    expect(isCapHit(undefined)).toBe(false);
  });
});

describe('deriveIdempotencyKey', () => {
  it('is stable for the same parts and differs for different parts, whatever they contain', () => {
    const key = deriveIdempotencyKey(['wf-123', 'activity-7', 'charge', 'cus_1']);
    expect(deriveIdempotencyKey(['wf-123', 'activity-7', 'charge', 'cus_1'])).toBe(key);
    expect(deriveIdempotencyKey(['wf-124', 'activity-7', 'charge', 'cus_1'])).not.toBe(key);
    // Parts are not simply concatenated: the boundaries matter.
    expect(deriveIdempotencyKey(['ab', 'c'])).not.toBe(deriveIdempotencyKey(['a', 'bc']));
    expect(deriveIdempotencyKey([1, 2])).toBe(deriveIdempotencyKey(['1', '2']));
    expect(key).toMatch(/^kb_[A-Za-z0-9_-]{43}$/);
    expect(deriveIdempotencyKey(['x'.repeat(10_000)]).length).toBeLessThanOrEqual(255);
    expect(() => deriveIdempotencyKey([])).toThrow(TypeError);
  });
});
