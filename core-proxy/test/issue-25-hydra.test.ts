import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminClient, stripeMockProxy } from './helpers.js';
import { type HydraServer, startHydra } from './hydra-server.js';
import { issuersFile } from './workload-tokens.js';

/**
 * Issue 25 against a real OIDC provider: ORY Hydra v2.3.0 (`scripts/install-hydra.sh`), found by
 * OIDC discovery, issuing JWT access tokens by client credentials with audience `keybrake`.
 */
let hydra: HydraServer;

beforeAll(async () => {
  hydra = await startHydra();
});

afterAll(async () => {
  await hydra?.stop();
});

function hydraIssuersFile(): string {
  return issuersFile({
    issuers: [{ issuer: hydra.issuer, audiences: ['keybrake'], algorithms: ['RS256', 'ES256'] }],
    policies: [
      {
        name: 'billing-workers',
        match: { iss: hydra.issuer, sub: 'billing-*' },
        grant: {
          vendors: ['stripe'],
          max_usd_cap: 10,
          max_ttl: '1h',
          allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/payment_intents/*'],
          label_prefix: 'temporal/billing/',
        },
      },
    ],
  });
}

const WITHIN = {
  vendor: 'stripe',
  usd_cap: 10,
  expires_in: '30m',
  allowed_endpoints: ['POST /v1/payment_intents'],
  agent_run_label: 'temporal/billing/wf-1',
};

function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()) as { kid: string }).kid;
}

describe('issue 25: workload identity with tokens from ORY Hydra (a real OIDC provider, client credentials)', () => {
  it('bounds a key issued with a Hydra token by its policy, and records the identity on the key', async () => {
    const proxy = await stripeMockProxy({ env: { KEYBRAKE_ISSUERS_FILE: hydraIssuersFile() } });
    const client = await hydra.createClient({ clientId: `billing-${Date.now()}` });
    const token = await hydra.token(client);
    const workload = adminClient(proxy.url, token);

    for (const [what, change, code] of [
      ['over the cap', { usd_cap: 10.5 }, 'policy_cap'],
      [
        'another vendor',
        { vendor: 'twilio', allowed_endpoints: ['POST /2010-04-01/Accounts/*/Messages.json'] },
        'policy_vendor',
      ],
      [
        'a wider allowlist',
        { allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/refunds'] },
        'policy_endpoints',
      ],
      ['a label outside the prefix', { agent_run_label: 'temporal/payroll/wf-1' }, 'policy_label'],
      ['a TTL over the most', { expires_in: '2h' }, 'policy_ttl'],
    ] as const) {
      const answer = await workload('POST', '/vault/keys', { ...WITHIN, ...change });
      expect({ what, status: answer.status, code: answer.body.error?.code }).toEqual({ what, status: 403, code });
    }
    expect((await proxy.admin('GET', '/vault/keys')).body.keys).toEqual([]);

    const issued = await workload('POST', '/vault/keys', WITHIN);
    expect(issued.status, JSON.stringify(issued.body)).toBe(201);
    const identity = { issuer: hydra.issuer, subject: client.clientId, policy: 'billing-workers' };
    expect(issued.body.identity).toEqual(identity);
    expect((await workload('GET', `/vault/keys/${issued.body.key_id}`)).body.identity).toEqual(identity);
    expect(
      (await proxy.admin('GET', '/vault/keys')).body.keys.map((key: { identity: unknown }) => key.identity),
    ).toEqual([identity]);

    // A Hydra client the policy does not match, and a token for another audience.
    const stranger = await hydra.createClient({ clientId: `payroll-${Date.now()}` });
    const refused = await adminClient(proxy.url, await hydra.token(stranger))('POST', '/vault/keys', WITHIN);
    expect([refused.status, refused.body.error.code]).toEqual([403, 'policy_no_match']);
    const elsewhere = await hydra.createClient({ clientId: `billing-other-${Date.now()}`, audience: ['another-api'] });
    const wrongAudience = await adminClient(proxy.url, await hydra.token(elsewhere, 'another-api'))(
      'POST',
      '/vault/keys',
      WITHIN,
    );
    expect([wrongAudience.status, wrongAudience.body.error.code]).toEqual([401, 'token_audience']);
    expect((await proxy.admin('GET', '/vault/keys')).body.keys).toHaveLength(1);

    // The key works on the proxy within its allowlist, and its call's audit record names the identity.
    const call = await proxy.call('/stripe/v1/payment_intents', {
      method: 'POST',
      headers: {
        authorization: `Bearer ${issued.body.vault_key}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'amount=500&currency=usd',
    });
    expect(call.status).toBe(200);
    const calls = await workload('GET', `/vault/keys/${issued.body.key_id}/calls`);
    expect(
      calls.body.calls.map((entry: { outcome: string; identity: unknown }) => [entry.outcome, entry.identity]),
    ).toEqual([['forwarded', identity]]);
    expect((await proxy.admin('GET', '/audit/verify')).body.ok).toBe(true);
    const everything = [JSON.stringify(calls.body), ...proxy.logs()].join('\n');
    expect(everything).not.toContain(token.split('.')[2]);
  });

  it("follows Hydra's key rotation without a restart, refetching its JWKS on an unknown kid at most once per cooldown", async () => {
    const proxy = await stripeMockProxy({ env: { KEYBRAKE_ISSUERS_FILE: hydraIssuersFile() } });
    const client = await hydra.createClient({ clientId: `billing-rotation-${Date.now()}` });
    const before = await hydra.token(client);
    expect((await adminClient(proxy.url, before)('POST', '/vault/keys', WITHIN)).status).toBe(201);

    const kid = await hydra.rotateAccessTokenKey();
    const after = await hydra.token(client);
    expect(kidOf(after)).toBe(kid);
    expect(kidOf(after)).not.toBe(kidOf(before));
    // The JWKS was fetched moments ago: an unknown kid does not refetch it yet (rate limit).
    const tooSoon = await adminClient(proxy.url, after)('POST', '/vault/keys', WITHIN);
    expect([tooSoon.status, tooSoon.body.error?.code]).toEqual([401, 'token_unknown_key']);
    // Past the cooldown (10 s on the proxy's clock), the unknown kid refetches the JWKS: the new key verifies.
    proxy.advance(11_000);
    const rotated = await adminClient(proxy.url, after)('POST', '/vault/keys', WITHIN);
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(201);
    // Tokens signed before the rotation still verify while Hydra publishes their key.
    expect((await adminClient(proxy.url, before)('POST', '/vault/keys', WITHIN)).status).toBe(201);
  });
});
