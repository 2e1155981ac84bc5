import { describe, expect, it } from 'vitest';
import { json, rawRequest, sendJson, startFakeVendor, startProxy } from './helpers.js';

/** Allowlist smuggling, checked against a fake vendor of our own that records exactly what arrives. */
describe('allowlist on the normalized path (fake vendor)', () => {
  async function setup(allowed: string[]) {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'obj_1' }));
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: allowed });
    const call = (path: string, init: RequestInit = {}) =>
      proxy.call(path, {
        ...init,
        headers: { authorization: `Bearer ${key.vault_key}`, ...(init.headers as Record<string, string>) },
      });
    return { vendor, proxy, key, call };
  }

  it('forwards the real secret and never the vault key, keeping the query string', async () => {
    const { vendor, proxy, key, call } = await setup(['GET /v1/customers']);
    const response = await call('/stripe/v1/customers?limit=3&email=a%40b.c', {
      headers: { 'x-keybrake-provenance': 'trusted', 'x-custom': 'kept' },
    });
    expect(response.status).toBe(200);
    const received = vendor.received[0];
    expect(received?.url).toBe('/v1/customers?limit=3&email=a%40b.c');
    expect(received?.headers.authorization).toBe(`Bearer ${proxy.secrets.STRIPE_SECRET_KEY}`);
    expect(JSON.stringify(received?.headers)).not.toContain(key.vault_key);
    expect(received?.headers['x-custom']).toBe('kept');
    expect(received?.headers['x-keybrake-provenance']).toBeUndefined();
  });

  // A `..` (plain or encoded) is resolved, and the path it leads to is checked: not allowed, 403.
  // What could make the vendor see another path than the one checked is refused outright: 400.
  it.each([
    ['dot-dot out of an allowed prefix', '/stripe/v1/customers/../charges', 403, 'endpoint_not_allowed'],
    ['encoded dot-dot', '/stripe/v1/customers/%2e%2e/charges', 403, 'endpoint_not_allowed'],
    ['encoded slash inside a segment', '/stripe/v1/customers%2F..%2Fcharges', 400, 'invalid_request'],
    ['double encoding', '/stripe/v1/customers/%252e%252e/charges', 400, 'invalid_request'],
    ['encoded backslash', '/stripe/v1/customers/..%5Ccharges', 400, 'invalid_request'],
    ['climbing above the root', '/stripe/../v1/customers', 400, 'invalid_request'],
  ])('does not let %s reach the vendor', async (_name, path, status, code) => {
    const { vendor, proxy, key } = await setup(['GET /v1/customers/*', 'GET /v1/customers']);
    const response = await rawRequest(proxy.url, 'GET', path, { authorization: `Bearer ${key.vault_key}` });
    expect({ status: response.status, code: JSON.parse(response.body).error.code }).toEqual({ status, code });
    expect(vendor.received).toHaveLength(0);
  });

  it('checks and forwards the same normalized path: duplicate slashes, dots and percent-encoding', async () => {
    const { vendor, proxy, key } = await setup(['GET /v1/customers/*']);
    const get = async (path: string) =>
      (await rawRequest(proxy.url, 'GET', path, { authorization: `Bearer ${key.vault_key}` })).status;
    expect(await get('/stripe//v1///customers/./cus_1/')).toBe(200);
    expect(await get('/stripe/v1/customers/cus_%31')).toBe(200);
    expect(await get('/stripe/v1/charges/../customers/cus_2')).toBe(200);
    expect(vendor.received.map((r) => r.url)).toEqual([
      '/v1/customers/cus_1',
      '/v1/customers/cus_1',
      '/v1/customers/cus_2',
    ]);
  });

  it('matches "*" to exactly one segment', async () => {
    const { vendor, call } = await setup(['GET /v1/customers/*']);
    expect((await call('/stripe/v1/customers/cus_1/sources')).status).toBe(403);
    expect((await call('/stripe/v1/customers')).status).toBe(403);
    expect(vendor.received).toHaveLength(0);
  });

  it.each([['x-http-method-override'], ['x-http-method'], ['x-method-override']])(
    'refuses a %s header that changes the method, and never forwards it',
    async (header) => {
      const { vendor, call } = await setup(['GET /v1/customers/*']);
      const smuggled = await call('/stripe/v1/customers/cus_1', { headers: { [header]: 'DELETE' } });
      expect(smuggled.status).toBe(403);
      expect((await json(smuggled)).error.code).toBe('endpoint_not_allowed');
      expect(vendor.received).toHaveLength(0);
      expect((await call('/stripe/v1/customers/cus_1', { headers: { [header]: 'GET' } })).status).toBe(200);
      expect(vendor.received[0]?.headers[header]).toBeUndefined();
    },
  );

  it('refuses a _method query parameter that changes the method', async () => {
    const { vendor, call } = await setup(['GET /v1/customers/*']);
    const response = await call('/stripe/v1/customers/cus_1?_method=DELETE');
    expect(response.status).toBe(403);
    expect(vendor.received).toHaveLength(0);
  });

  it('refuses request bodies over the limit with 413 payload_too_large, forwarding nothing', async () => {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, {}));
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, KEYBRAKE_MAX_BODY_BYTES: '1024' } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: ['POST /v1/customers'] });
    const response = await proxy.call('/stripe/v1/customers', {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `description=${'x'.repeat(2048)}`,
    });
    expect(response.status).toBe(413);
    expect((await json(response)).error.code).toBe('payload_too_large');
    expect(vendor.received).toHaveLength(0);
  });
});
