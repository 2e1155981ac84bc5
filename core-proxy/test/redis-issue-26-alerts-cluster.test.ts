import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { startAlertReceiver } from './alert-receiver.js';
import { json, redisDeployment, stripeCharge, stripeMockProxy } from './helpers.js';

describe('issue 26: alerts on Redis Cluster', () => {
  it('two replicas on a 3-master Cluster fire each threshold and the cap hit once, and settle normally', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret });
    const deployment = {
      ...redisDeployment(inject('redisClusterUrl')),
      env: { KEYBRAKE_ALERT_WEBHOOK_URL: receiver.url, KEYBRAKE_ALERT_WEBHOOK_SECRET: secret },
    };
    const [a, b] = await Promise.all([stripeMockProxy(deployment), stripeMockProxy(deployment)]);
    const key = await a!.issueKey({
      vendor: 'stripe',
      usd_cap: 4,
      allowed_endpoints: ['POST /v1/payment_intents'],
      alerts: [{ at_fraction: 0.5 }, { at_fraction: 1 }],
    });
    for (const [i, cents] of [200, 100, 100].entries()) {
      expect((await stripeCharge(i % 2 ? b! : a!, key.vault_key, cents)).status).toBe(200);
    }
    const refused = await stripeCharge(b!, key.vault_key, 100);
    expect((await json(refused)).error.code).toBe('cap_exhausted');
    await receiver.until(() => receiver.distinct().size >= 3, 'three alerts');
    const kinds = [...receiver.distinct().values()].map((alert) => `${alert.type} ${alert.at_fraction}`);
    expect(kinds.sort()).toEqual([
      'keybrake.alert.cap_hit null',
      'keybrake.alert.threshold 0.5',
      'keybrake.alert.threshold 1',
    ]);
    expect((await a!.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(4);
  });
});
