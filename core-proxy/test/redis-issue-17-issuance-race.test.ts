import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, inject, it } from 'vitest';
import { issueStripeChild, redisDeployment, startProxy, type TestProxy } from './helpers.js';

const allowed = ['POST /v1/payment_intents'];

/** Two replicas of one deployment: same Redis and prefix, same secrets and issuer key, each its own store client. */
async function startReplicas(redisUrl: string): Promise<[TestProxy, TestProxy]> {
  const shared = redisDeployment(redisUrl);
  return [await startProxy(shared), await startProxy(shared)];
}

// Regression: issue 17 ("Replicas"): `markSubtree` read the family's members before its script ran,
// so a child issued on one replica while its parent was revoked on another could stay `active`.
describe.each([
  ['one Redis', () => inject('redisUrl')],
  ['a 3-master Redis Cluster', () => inject('redisClusterUrl')],
])('issue 17: issuing a child on one replica while its parent is revoked on another, on %s', (_name, url) => {
  it('never leaves an active child of a revoked parent (60 rounds of 12 children racing a revoke)', async () => {
    const [a, b] = await startReplicas(url());
    const root = await a.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: allowed });
    let issued = 0;
    let refused = 0;
    for (let round = 0; round < 60; round += 1) {
      const parent = (await issueStripeChild(a, root.key_id)).body;
      // Warm both replicas' caches of the parent, so issuance and revocation start at once.
      await b.admin('GET', `/vault/keys/${parent.key_id}`);
      const [revoke, ...children] = await Promise.all([
        sleep(round % 4).then(() => b.admin('DELETE', `/vault/keys/${parent.key_id}`)),
        ...Array.from({ length: 12 }, (_, i) => issueStripeChild(i % 2 === 0 ? a : b, parent.key_id)),
      ]);
      expect(revoke!.status).toBe(200);
      for (const child of children) {
        if (child.status !== 201) {
          refused += 1;
          expect(child.status).toBe(400);
          expect(child.body.error).toMatchObject({ code: 'invalid_request', message: 'The parent key is not active.' });
          continue;
        }
        issued += 1;
        for (const replica of [a, b]) {
          const state = (await replica.admin('GET', `/vault/keys/${child.body.key_id}`)).body;
          expect(state.status, `child ${child.body.key_id} of revoked ${parent.key_id}`).toBe('revoked');
        }
      }
    }
    console.log(
      `[figures] ${_name}: issuance racing revocation on 2 replicas: ${issued} issued (all revoked), ${refused} refused`,
    );
  });
});
