/**
 * Issue 20: a vendor declared in KEYBRAKE_VENDORS_FILE gets every guarantee a built-in one has.
 * The same checks run for Stripe (stripe-mock) and for a declared vendor played by go-httpbin, a
 * real third-party server that echoes what it receives. Between the proxy and each vendor, a
 * counting relay records every request that reached the vendor and the headers it carried.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it, onTestFinished } from 'vitest';
import { type CountingRelay, startRelay } from './counting-relay.js';
import { type GoHttpbin, startGoHttpbin } from './go-httpbin.js';
import { type TestProxy, json, newSecrets, startProxy, stripeCharge } from './helpers.js';

let httpbin: GoHttpbin;
beforeAll(async () => {
  httpbin = await startGoHttpbin();
});
afterAll(async () => {
  await httpbin?.stop();
});

/** Writes a vendors file for the test, removed after it. */
export function vendorsFile(yaml: string): string {
  const folder = mkdtempSync(join(tmpdir(), 'keybrake-vendors-'));
  onTestFinished(() => rmSync(folder, { recursive: true, force: true }));
  const file = join(folder, 'vendors.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** One vendor under test, behind a counting relay. */
interface VendorUnderTest {
  readonly proxy: TestProxy;
  readonly relay: CountingRelay;
  /** The real secret the vendor must receive, and nobody else. */
  readonly secret: string;
  readonly vendor: string;
  /** The priced endpoint (allowlist form) and the line the relay sees for it. */
  readonly endpoint: string;
  readonly upstreamLine: string;
  /** An endpoint of the vendor the test keys never allow. */
  readonly otherPath: string;
  /** A call to the priced endpoint that costs `cents` US cents. */
  call(vaultKey: string, cents: number, headers?: Record<string, string>): Promise<Response>;
  /** The header that presents the vault key as this vendor's clients do. */
  present(vaultKey: string): Record<string, string>;
  /** The vendor's id for the `n`th call (1-based), as the audit must record it; `any` when the vendor picks it. */
  readonly requestIdOf?: (cents: number) => string;
}

const TARGETS: Record<string, () => Promise<VendorUnderTest>> = {
  'stripe (stripe-mock)': async () => {
    const relay = await startRelay(inject('stripeMockUrl'));
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: relay.url } });
    return {
      proxy,
      relay,
      secret: proxy.secrets.STRIPE_SECRET_KEY as string,
      vendor: 'stripe',
      endpoint: 'POST /v1/payment_intents',
      upstreamLine: 'POST /v1/payment_intents',
      otherPath: '/stripe/v1/refunds',
      call: (vaultKey, cents, headers = {}) => stripeCharge(proxy, vaultKey, cents, headers),
      present: (vaultKey) => ({ authorization: `Bearer ${vaultKey}` }),
    };
  },
  'acme-pay (declared in KEYBRAKE_VENDORS_FILE, go-httpbin)': async () => {
    const relay = await startRelay(httpbin.url);
    const secret = `acme_live_${randomBytes(16).toString('hex')}`;
    const file = vendorsFile(`
vendors:
  - name: acme-pay
    base_url: ${relay.url}/anything
    vault_key: { scheme: header, header: X-Acme-Key }
    secret: { env: ACME_PAY_API_KEY, scheme: bearer }
    costs:
      - endpoint: POST /v1/charges
        request_field: amount
        usd_per_unit: 0.01
    request_id: { body_field: json.reference }
    sensitive: [POST /v1/refunds]
`);
    const proxy = await startProxy({
      secrets: { ...newSecrets(), ACME_PAY_API_KEY: secret },
      env: { KEYBRAKE_VENDORS_FILE: file },
    });
    return {
      proxy,
      relay,
      secret,
      vendor: 'acme-pay',
      endpoint: 'POST /v1/charges',
      upstreamLine: 'POST /anything/v1/charges',
      otherPath: '/acme-pay/v1/payouts',
      call: (vaultKey, cents, headers = {}) =>
        proxy.call('/acme-pay/v1/charges', {
          method: 'POST',
          headers: { 'x-acme-key': vaultKey, 'content-type': 'application/json', ...headers },
          body: JSON.stringify({ amount: cents, currency: 'usd', reference: `ref-${cents}` }),
        }),
      present: (vaultKey) => ({ 'x-acme-key': vaultKey }),
      requestIdOf: (cents) => `ref-${cents}`,
    };
  },
};

describe.each(Object.keys(TARGETS))('issue 20: the same enforcement for %s', (target) => {
  const start = TARGETS[target] as () => Promise<VendorUnderTest>;

  async function keyFor(v: VendorUnderTest, usdCap: number): Promise<{ key_id: string; vault_key: string }> {
    return v.proxy.issueKey({ vendor: v.vendor, usd_cap: usdCap, allowed_endpoints: [v.endpoint], expires_in: '1h' });
  }

  it('injects the real secret, never forwards the vault key, never returns the secret, and audits the call', async () => {
    const v = await start();
    const key = await keyFor(v, 10);
    const response = await v.call(key.vault_key, 125);
    const text = await response.text();
    expect(response.status, text).toBe(200);
    expect(response.headers.get('x-keybrake-key-id')).toBe(key.key_id);
    expect(v.relay.passedOn).toHaveLength(1);
    const received = v.relay.passedOn[0]!;
    expect(received.line).toBe(v.upstreamLine);
    expect(received.headers.authorization).toBe(`Bearer ${v.secret}`);
    expect(JSON.stringify(received.headers)).not.toContain(key.vault_key);
    expect(text).not.toContain(v.secret);
    expect(text).not.toContain(key.vault_key);

    const calls = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({
      key_id: key.key_id,
      vendor: v.vendor,
      method: 'POST',
      outcome: 'forwarded',
      status: 200,
      cost_usd: 1.25,
      tainted: false,
    });
    if (v.requestIdOf) expect(calls[0].vendor_request_id).toBe(v.requestIdOf(125));
    else expect(typeof calls[0].vendor_request_id).toBe('string');
    expect(JSON.stringify(calls)).not.toContain(v.secret);
    expect((await v.proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: 1 });
  });

  it('refuses an endpoint outside the allowlist: 403 endpoint_not_allowed, nothing reaches the vendor', async () => {
    const v = await start();
    const key = await keyFor(v, 10);
    const response = await v.proxy.call(v.otherPath, {
      method: 'POST',
      headers: { ...v.present(key.vault_key), 'content-type': 'application/json' },
      body: '{"amount":1}',
    });
    expect(response.status).toBe(403);
    expect(response.headers.get('x-keybrake-error')).toBe('endpoint_not_allowed');
    expect((await json(response)).error.code).toBe('endpoint_not_allowed');
    expect(v.relay.passedOn).toHaveLength(0);
    const calls = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls).toMatchObject([{ outcome: 'blocked', reason: 'endpoint_not_allowed', cost_usd: 0 }]);
  });

  it('answers a cap hit with 429 and X-Keybrake-Cap-Hit: true, and forwards nothing', async () => {
    const v = await start();
    const key = await keyFor(v, 1);
    expect((await v.call(key.vault_key, 60)).status).toBe(200);
    const refused = await v.call(key.vault_key, 60);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect((await json(refused)).error.code).toBe('cap_exhausted');
    expect(v.relay.forwarded(v.upstreamLine)).toBe(1);
    expect(v.relay.passedOn).toHaveLength(1);
    const state = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state).toMatchObject({ spent_usd: 0.6, reserved_usd: 0 });
  });

  it('never overshoots the cap under 20 concurrent calls: exactly the calls that fit reach the vendor', async () => {
    const v = await start();
    const key = await keyFor(v, 1);
    const statuses = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const response = await v.call(key.vault_key, 30);
        await response.arrayBuffer();
        return response.status;
      }),
    );
    expect(statuses.filter((status) => status === 200)).toHaveLength(3);
    expect(statuses.filter((status) => status === 429)).toHaveLength(17);
    expect(v.relay.forwarded(v.upstreamLine)).toBe(3);
    const state = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBeCloseTo(0.9, 6);
    expect(state.reserved_usd).toBe(0);
  });

  it('replays a repeated Idempotency-Key without calling the vendor or charging again', async () => {
    const v = await start();
    const key = await keyFor(v, 10);
    const idempotencyKey = `order-${randomBytes(6).toString('hex')}`;
    const first = await v.call(key.vault_key, 200, { 'idempotency-key': idempotencyKey });
    const firstBody = await first.text();
    const second = await v.call(key.vault_key, 200, { 'idempotency-key': idempotencyKey });
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(await second.text()).toBe(firstBody);
    expect(v.relay.forwarded(v.upstreamLine)).toBe(1);
    expect((await v.proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(2);
    const calls = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls.map((call: { outcome: string }) => call.outcome)).toEqual(['forwarded', 'replayed']);
  });

  it('refuses a revoked key: 401 vault_key_revoked, nothing reaches the vendor', async () => {
    const v = await start();
    const key = await keyFor(v, 10);
    expect((await v.proxy.admin('DELETE', `/vault/keys/${key.key_id}`)).status).toBe(200);
    const response = await v.call(key.vault_key, 100);
    expect(response.status).toBe(401);
    expect((await json(response)).error.code).toBe('vault_key_revoked');
    expect(v.relay.passedOn).toHaveLength(0);
  });

  it('refuses a tainted request to the priced endpoint: 403 tainted_request_refused, nothing forwarded', async () => {
    const v = await start();
    const key = await keyFor(v, 10);
    const response = await v.call(key.vault_key, 100, { 'x-keybrake-provenance': 'untrusted' });
    expect(response.status).toBe(403);
    expect((await json(response)).error.code).toBe('tainted_request_refused');
    expect(v.relay.passedOn).toHaveLength(0);
    const calls = (await v.proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls).toMatchObject([{ outcome: 'blocked', reason: 'tainted_request_refused', tainted: true }]);
  });
});
