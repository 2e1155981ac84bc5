import { describe, expect, it, onTestFinished } from 'vitest';
import { json, redisDeployment, startProxy } from './helpers.js';
import { startRedis } from './redis-server.js';
import { startStripeStandIn } from './stand-in-vendors.js';

/** `calls` per command of Redis's `INFO commandstats`. */
function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const match of info.matchAll(/^cmdstat_([\w|]+):calls=(\d+)/gm)) calls.set(match[1] as string, Number(match[2]));
  return calls;
}

/**
 * Regression: issue 21. A proxied call on the Redis store cost three scripts, each a command Redis
 * runs, wraps in MULTI/EXEC in its AOF and fsyncs, and one more the proxy builds and parses: the
 * reservation, the settlement, and the record of the PaymentIntent the answer created. The object
 * is recorded inside the settlement now; it must still be tracked (a later confirm is priced from it).
 */
describe('issue 21: Redis commands per proxied call (stand-in Stripe that bills as Stripe documents)', () => {
  it('a call that creates a PaymentIntent runs two scripts, and its PaymentIntent is still tracked', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    const stripe = await startStripeStandIn();
    const proxy = await startProxy({
      ...redisDeployment(redis.url),
      env: { KEYBRAKE_STRIPE_BASE_URL: stripe.url },
      // No periodic seal or sweep among the counted commands.
      redisStore: { sealIntervalMs: 3_600_000, sweepIntervalMs: 3_600_000 },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1_000,
      allowed_endpoints: ['POST /v1/payment_intents', 'POST /v1/payment_intents/*/confirm'],
    });
    const post = (path: string, params: Record<string, string> = {}) =>
      proxy.call(`/stripe${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams(params).toString(),
      });
    // The first call loads the scripts and the key's immutable record.
    expect((await post('/v1/payment_intents', { amount: '100', currency: 'usd' })).status).toBe(200);

    await redis.cli('CONFIG', 'RESETSTAT');
    const created: string[] = [];
    for (let i = 0; i < 10; i += 1) {
      const response = await post('/v1/payment_intents', { amount: String(200 + i), currency: 'usd' });
      expect(response.status).toBe(200);
      created.push((await json(response)).id as string);
    }
    const calls = commandCalls(await redis.cli('INFO', 'commandstats'));
    expect((calls.get('evalsha') ?? 0) + (calls.get('eval') ?? 0)).toBe(20);

    // Tracked with the settlement: a confirm is priced from it (untracked, it would be refused as not
    // priceable), and what the create booked for it is not counted twice.
    const spent = async () => (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd as number;
    const before = await spent();
    expect(before).toBeCloseTo(1 + 20.45, 6);
    expect((await post(`/v1/payment_intents/${created[3] as string}/confirm`)).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBeCloseTo(2.03, 6);
    expect(await spent()).toBeCloseTo(before, 6);
  });
});
