import { randomUUID } from 'node:crypto';
import { subworkflowsSource } from '@keybrake/cloud-workflows';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startProxy } from '../../../core-proxy/test/helpers.js';
import { startRelay } from '../../../core-proxy/test/counting-relay.js';
import { type HydraServer, startHydra } from '../../../core-proxy/test/hydra-server.js';
import { issuersFile } from '../../../core-proxy/test/workload-tokens.js';
import { runInEmulator } from './emulator.js';

/**
 * Issue 25: the subworkflows' token route. workflows-emulator 1.10.0 cannot mint Google's OIDC
 * token (`auth: OIDC` raises NotImplementedError: emulator-gaps.e2e.test.ts), so the bearer a
 * workflow would get from Google is a JWT of a real OIDC provider (ORY Hydra, client credentials)
 * passed in as `issuer_key`: the proxy verifies it and bounds the key by its policy.
 */
let hydra: HydraServer;

beforeAll(async () => {
  hydra = await startHydra();
}, 120_000);

afterAll(async () => {
  await hydra?.stop();
});

describe('issue 25: Cloud Workflows subworkflows with a bearer token from ORY Hydra (workflows-emulator, real proxy, stripe-mock)', () => {
  it('the example issues, charges and revokes with the token: the key carries its identity and the policy bounds it', async () => {
    const relay = await startRelay(inject('stripeMockUrl'));
    const proxy = await startProxy({
      store: 'embedded',
      env: {
        KEYBRAKE_STRIPE_BASE_URL: relay.url,
        KEYBRAKE_ISSUERS_FILE: issuersFile({
          issuers: [{ issuer: hydra.issuer, audiences: ['keybrake'], algorithms: ['RS256', 'ES256'] }],
          policies: [
            {
              name: 'gcw-billing',
              match: { iss: hydra.issuer, sub: 'gcw-billing-*' },
              grant: { vendors: ['stripe'], max_usd_cap: 50, label_prefix: 'cloud-workflows/' },
            },
          ],
        }),
      },
    });
    const client = await hydra.createClient({ clientId: `gcw-billing-${randomUUID()}` });
    const token = await hydra.token(client);
    const list = [
      { id: 'cus_1', amount_cents: 500 },
      { id: 'cus_2', amount_cents: 700 },
    ];
    const argument = { proxy_url: proxy.url, customers: list, issuer_key_from_argument: true, issuer_key: token };
    const outcome = await runInEmulator(subworkflowsSource(), { ...argument, budget_usd: 20 });
    expect(outcome.state, outcome.stderr.slice(-3000)).toBe('SUCCEEDED');
    expect(outcome.result).toMatchObject({ key_status: 'revoked', charged: 2, failed: 0, spent_usd: 12 });
    expect(relay.forwarded('POST /v1/payment_intents')).toBe(2);
    const key = (await proxy.admin('GET', `/vault/keys/${outcome.result.key_id}`)).body;
    expect(key).toMatchObject({
      status: 'revoked',
      identity: { issuer: hydra.issuer, subject: client.clientId, policy: 'gcw-billing' },
    });
    // A budget over the policy's most: 403 policy_cap, no key, no charge.
    const over = await runInEmulator(subworkflowsSource(), { ...argument, budget_usd: 80 });
    expect(over.state).toBe('FAILED');
    expect(JSON.stringify(over.error)).toContain('policy_cap');
    expect((await proxy.admin('GET', '/vault/keys')).body.keys).toHaveLength(1);
    expect(relay.forwarded('POST /v1/payment_intents')).toBe(2);
    expect(JSON.stringify(outcome.result)).not.toContain(token);
  });
});
