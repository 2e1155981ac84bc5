import { describe, expect, it } from 'vitest';
import { json, startProxy } from './helpers.js';

const stripeKey = { vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'] };

describe('admin API', () => {
  it('refuses requests without a valid issuer key, with 401 unauthorized', async () => {
    const proxy = await startProxy();
    for (const authorization of [undefined, 'Bearer wrong', `Basic ${proxy.apiKey}`, `Bearer ${proxy.apiKey}x`]) {
      const response = await proxy.call('/vault/keys', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(authorization ? { authorization } : {}) },
        body: JSON.stringify({ ...stripeKey, expires_in: '1h' }),
      });
      expect(response.status).toBe(401);
      expect((await json(response)).error.code).toBe('unauthorized');
    }
    expect((await proxy.call('/audit/verify')).status).toBe(401);
  });

  it('accepts any of several comma-separated issuer keys', async () => {
    const proxy = await startProxy({ env: { KEYBRAKE_API_KEYS: 'first-key, second-key' } });
    for (const key of ['first-key', 'second-key']) {
      const response = await proxy.call('/audit/verify', { headers: { authorization: `Bearer ${key}` } });
      expect(response.status).toBe(200);
    }
  });

  it('issues a key that is shown once and reads back without the vault key', async () => {
    const proxy = await startProxy();
    const issued = await proxy.issueKey({
      ...stripeKey,
      daily_usd_cap: 20,
      agent_run_label: 'argo/billing-x7k2p',
      expires_in: '2h',
    });
    expect(issued).toMatchObject({
      vendor: 'stripe',
      usd_cap: 100,
      daily_usd_cap: 20,
      allowed_endpoints: ['POST /v1/payment_intents'],
      agent_run_label: 'argo/billing-x7k2p',
    });
    expect(issued.vault_key).toMatch(/^kb_vk_[A-Za-z0-9_-]{43}$/);
    expect(Date.parse(issued.expires_at) - Date.now()).toBeGreaterThan(2 * 3600_000 - 60_000);

    const read = await proxy.admin('GET', `/vault/keys/${issued.key_id}`);
    expect(read.status).toBe(200);
    expect(read.body).toMatchObject({
      key_id: issued.key_id,
      vendor: 'stripe',
      status: 'active',
      spent_usd: 0,
      reserved_usd: 0,
      remaining_usd: 20,
      agent_run_label: 'argo/billing-x7k2p',
    });
    expect(JSON.stringify(read.body)).not.toContain(issued.vault_key);
  });

  it.each([
    ['no body fields', {}],
    ['unknown vendor', { ...stripeKey, vendor: 'paypal', expires_in: '1h' }],
    ['no cap at all', { vendor: 'stripe', allowed_endpoints: ['POST /v1/charges'], expires_in: '1h' }],
    ['negative cap', { ...stripeKey, usd_cap: -5, expires_in: '1h' }],
    ['zero daily cap', { ...stripeKey, daily_usd_cap: 0, expires_in: '1h' }],
    ['cap as a string', { ...stripeKey, usd_cap: '100', expires_in: '1h' }],
    ['empty allowlist', { ...stripeKey, allowed_endpoints: [], expires_in: '1h' }],
    ['allowlist not an array', { ...stripeKey, allowed_endpoints: 'POST /v1/charges', expires_in: '1h' }],
    ['allowlist entry without a path', { ...stripeKey, allowed_endpoints: ['POST'], expires_in: '1h' }],
    ['allowlist entry with a bad method', { ...stripeKey, allowed_endpoints: ['FETCH /v1/charges'], expires_in: '1h' }],
    [
      'allowlist entry with a partial wildcard',
      { ...stripeKey, allowed_endpoints: ['GET /v1/cus*'], expires_in: '1h' },
    ],
    ['missing expires_in', { ...stripeKey }],
    ['expires_in with a bad unit', { ...stripeKey, expires_in: '3w' }],
    ['expires_in over 7 days', { ...stripeKey, expires_in: '8d' }],
    ['expires_in negative', { ...stripeKey, expires_in: -10 }],
    ['expires_in fractional', { ...stripeKey, expires_in: 1.5 }],
    ['label too long', { ...stripeKey, expires_in: '1h', agent_run_label: 'x'.repeat(201) }],
    ['label empty', { ...stripeKey, expires_in: '1h', agent_run_label: '' }],
    ['label of wrong type', { ...stripeKey, expires_in: '1h', agent_run_label: 42 }],
    ['unknown field', { ...stripeKey, expires_in: '1h', usd_capp: 5 }],
    ['tainted not a boolean', { ...stripeKey, expires_in: '1h', tainted: 'yes' }],
    ['a JSON array', [stripeKey]],
  ])('refuses %s with 400 invalid_request', async (_name, body) => {
    const proxy = await startProxy();
    const response = await proxy.admin('POST', '/vault/keys', body);
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('invalid_request');
    expect(typeof response.body.error.message).toBe('string');
  });

  it('refuses a vendor without a configured secret with 400 vendor_not_configured', async () => {
    const proxy = await startProxy({ env: { RESEND_API_KEY: '' } });
    const response = await proxy.admin('POST', '/vault/keys', {
      ...stripeKey,
      vendor: 'resend',
      allowed_endpoints: ['POST /emails'],
      expires_in: '1h',
    });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('vendor_not_configured');
  });

  it('answers malformed JSON, wrong media types and oversized bodies with contract errors', async () => {
    const proxy = await startProxy();
    const post = (body: string, contentType: string) =>
      proxy.call('/vault/keys', {
        method: 'POST',
        headers: { authorization: `Bearer ${proxy.apiKey}`, 'content-type': contentType },
        body,
      });
    const malformed = await post('{"vendor": "stripe",', 'application/json');
    expect(malformed.status).toBe(400);
    expect((await json(malformed)).error.code).toBe('invalid_request');
    const text = await post('vendor=stripe', 'text/plain');
    expect(text.status).toBe(415);
    expect((await json(text)).error.code).toBe('unsupported_media_type');
    const huge = await post(
      JSON.stringify({ ...stripeKey, expires_in: '1h', agent_run_label: 'x'.repeat(100_000) }),
      'application/json',
    );
    expect(huge.status).toBe(413);
    expect((await json(huge)).error.code).toBe('payload_too_large');
  });

  it('answers oversized headers with 431 headers_too_large as JSON', async () => {
    const proxy = await startProxy();
    const response = await proxy.call('/healthz', { headers: { 'x-filler': 'a'.repeat(20_000) } });
    expect(response.status).toBe(431);
    expect((await json(response)).error.code).toBe('headers_too_large');
  });

  it('answers unknown keys and routes with 404 not_found', async () => {
    const proxy = await startProxy();
    for (const [method, path] of [
      ['GET', '/vault/keys/key_nope'],
      ['DELETE', '/vault/keys/key_nope'],
      ['GET', '/vault/keys/key_nope/calls'],
      ['POST', '/vault/keys/key_nope/taint'],
    ] as const) {
      const response = await proxy.admin(method, path);
      expect(response.status, `${method} ${path}`).toBe(404);
      expect(response.body.error.code).toBe('not_found');
    }
    const unknownVendor = await proxy.call('/paypal/v1/payments');
    expect(unknownVendor.status).toBe(404);
    expect((await json(unknownVendor)).error.code).toBe('not_found');
  });

  it('revokes idempotently', async () => {
    const proxy = await startProxy();
    const issued = await proxy.issueKey({ ...stripeKey });
    for (let i = 0; i < 2; i += 1) {
      const response = await proxy.admin('DELETE', `/vault/keys/${issued.key_id}`);
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ key_id: issued.key_id, status: 'revoked' });
    }
    expect((await proxy.admin('GET', `/vault/keys/${issued.key_id}`)).body.status).toBe('revoked');
  });

  it('refuses a cap below one micro-dollar (regression: schemathesis found 5e-324 stored as a $0 cap)', async () => {
    const proxy = await startProxy();
    for (const field of ['usd_cap', 'daily_usd_cap']) {
      const body: Record<string, unknown> = { ...stripeKey, expires_in: '1h' };
      delete body.usd_cap;
      const response = await proxy.admin('POST', '/vault/keys', { ...body, [field]: 5e-324 });
      expect(response.status, field).toBe(400);
      expect(response.body.error.code).toBe('invalid_request');
    }
    const smallest = await proxy.admin('POST', '/vault/keys', { ...stripeKey, usd_cap: 0.000001, expires_in: '1h' });
    expect(smallest.status).toBe(201);
    expect(smallest.body.usd_cap).toBe(0.000001);
  });

  it('answers a method a path does not take with 405 method_not_allowed and Allow, and an unknown path with 404', async () => {
    const proxy = await startProxy();
    for (const [method, path, allow] of [
      ['PUT', '/vault/keys/key_x', 'DELETE, GET, HEAD'],
      ['PATCH', '/vault/keys', 'GET, HEAD, POST'],
      ['POST', '/audit/verify', 'GET, HEAD'],
      ['DELETE', '/healthz', 'GET, HEAD'],
    ] as const) {
      const response = await proxy.call(path, { method, headers: { authorization: `Bearer ${proxy.apiKey}` } });
      expect(response.status, `${method} ${path}`).toBe(405);
      expect(response.headers.get('allow')).toBe(allow);
      expect((await json(response)).error.code).toBe('method_not_allowed');
    }
    // A method Node knows but no route takes, with a body and no Content-Type, is still a 405.
    const query = await proxy.call('/vault/keys/key_x', { method: 'QUERY', body: 'x' });
    expect(query.status).toBe(405);
    const unknown = await proxy.call('/vault/nothing-here');
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error.code).toBe('not_found');
  });

  it('takes an empty body sent as application/json as no body (what Conductor HTTP tasks send)', async () => {
    const proxy = await startProxy();
    const issued = await proxy.issueKey({ ...stripeKey });
    const headers = { authorization: `Bearer ${proxy.apiKey}`, 'content-type': 'application/json' };
    const read = await proxy.call(`/vault/keys/${issued.key_id}`, { method: 'GET', headers });
    expect(read.status).toBe(200);
    const revoked = await proxy.call(`/vault/keys/${issued.key_id}`, { method: 'DELETE', headers, body: '' });
    expect(revoked.status).toBe(200);
    expect((await json(revoked)).status).toBe('revoked');
    const issueWithoutBody = await proxy.call('/vault/keys', { method: 'POST', headers, body: '' });
    expect(issueWithoutBody.status).toBe(400);
    expect((await json(issueWithoutBody)).error.code).toBe('invalid_request');
    const poisoned = await proxy.call('/vault/keys', {
      method: 'POST',
      headers,
      body: '{"__proto__": {"tainted": false}, "vendor": "stripe"}',
    });
    expect(poisoned.status).toBe(400);
    expect((await json(poisoned)).error.code).toBe('invalid_request');
  });

  it('keeps children within their parent: vendor, allowlist, expiry, revocation and taint', async () => {
    const proxy = await startProxy();
    const parent = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/customers/*'],
      expires_in: '1h',
    });
    const wider = await proxy.admin('POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/charges'],
      expires_in: '1h',
      parent_key_id: parent.key_id,
    });
    expect(wider.status).toBe(400);
    expect(wider.body.error.code).toBe('invalid_request');
    const otherVendor = await proxy.admin('POST', '/vault/keys', {
      vendor: 'resend',
      usd_cap: 10,
      allowed_endpoints: ['POST /emails'],
      expires_in: '1h',
      parent_key_id: parent.key_id,
    });
    expect(otherVendor.status).toBe(400);
    const orphan = await proxy.admin('POST', '/vault/keys', {
      ...stripeKey,
      expires_in: '1h',
      parent_key_id: 'key_missing',
    });
    expect(orphan.status).toBe(400);

    const child = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['GET /v1/customers/cus_123'],
      expires_in: '7d',
      parent_key_id: parent.key_id,
    });
    expect(Date.parse(child.expires_at)).toBeLessThanOrEqual(
      Date.parse((await proxy.admin('GET', `/vault/keys/${parent.key_id}`)).body.expires_at),
    );
    const grandchild = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 5,
      allowed_endpoints: ['GET /v1/customers/cus_123'],
      expires_in: '1h',
      parent_key_id: child.key_id,
    });

    expect((await proxy.admin('POST', `/vault/keys/${parent.key_id}/taint`)).body).toEqual({
      key_id: parent.key_id,
      tainted: true,
    });
    expect((await proxy.admin('GET', `/vault/keys/${grandchild.key_id}`)).body.tainted).toBe(true);
    const taintedChild = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['GET /v1/customers/*'],
      expires_in: '1h',
      parent_key_id: parent.key_id,
    });
    expect(taintedChild.tainted).toBe(true);

    await proxy.admin('DELETE', `/vault/keys/${parent.key_id}`);
    expect((await proxy.admin('GET', `/vault/keys/${child.key_id}`)).body.status).toBe('revoked');
    expect((await proxy.admin('GET', `/vault/keys/${grandchild.key_id}`)).body.status).toBe('revoked');
    const afterRevoke = await proxy.admin('POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['GET /v1/customers/*'],
      expires_in: '1h',
      parent_key_id: parent.key_id,
    });
    expect(afterRevoke.status).toBe(400);
  });

  it('serves health, readiness, metrics and the OpenAPI document without auth', async () => {
    const proxy = await startProxy();
    expect((await proxy.call('/healthz')).status).toBe(200);
    expect((await proxy.call('/readyz')).status).toBe(200);
    const metrics = await (await proxy.call('/metrics')).text();
    expect(metrics).toContain('keybrake_proxy_requests_total');
    expect(metrics).toContain('keybrake_upstream_duration_seconds');
    const openapi = await json(await proxy.call('/openapi.json'));
    expect(openapi.openapi).toMatch(/^3\./);
    expect(Object.keys(openapi.paths)).toEqual(
      expect.arrayContaining(['/vault/keys', '/vault/keys/{key_id}', '/vault/keys/{key_id}/calls', '/audit/verify']),
    );
  });
});
