import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { describe, expect, it, onTestFinished } from 'vitest';
import { json, redisDeployment, startProxy } from './helpers.js';
import { startRedis } from './redis-server.js';
import { startStripeStandIn } from './stand-in-vendors.js';

/**
 * The scripts Redis ran on a key family's keys since the slow log was reset: with a threshold of 0
 * it logs every command, with its first arguments (the audit sealer's scripts act on `{audit}`).
 */
async function familyScripts(url: string): Promise<number> {
  const client = new Redis(url);
  try {
    const entries = (await client.call('SLOWLOG', 'GET', '100000')) as [number, number, number, string[]][];
    return entries.filter(([, , , args]) => /^eval(sha)?$/i.test(args[0] ?? '') && (args[3] ?? '').includes('{vk:'))
      .length;
  } finally {
    client.disconnect();
  }
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
      // No sweep among the counted commands (the sweeper's settlements act on the family too).
      redisStore: { sweepIntervalMs: 3_600_000 },
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

    await redis.cli('CONFIG', 'SET', 'slowlog-log-slower-than', '0');
    await redis.cli('CONFIG', 'SET', 'slowlog-max-len', '100000');
    await redis.cli('SLOWLOG', 'RESET');
    const created: string[] = [];
    for (let i = 0; i < 10; i += 1) {
      const response = await post('/v1/payment_intents', { amount: String(200 + i), currency: 'usd' });
      expect(response.status).toBe(200);
      created.push((await json(response)).id as string);
    }
    expect(await familyScripts(redis.url)).toBe(20);

    // Tracked with the settlement: a confirm is priced from it (untracked, it would be refused as not
    // priceable), and what the create booked for it is not counted twice.
    const spent = async () => (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd as number;
    const before = await spent();
    expect(before).toBeCloseTo(1 + 20.45, 6);
    expect((await post(`/v1/payment_intents/${created[3] as string}/confirm`)).status).toBe(200);
    expect(stripe.ledger.totalUsd).toBeCloseTo(2.03, 6);
    expect(await spent()).toBeCloseTo(before, 6);
  });

  it('the scripts reach a Redis that wants a user and password, on the database the URL names', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    const password = randomUUID();
    await redis.cli('ACL', 'SETUSER', 'keybrake', 'on', `>${password}`, '~*', '&*', '+@all');
    const stripe = await startStripeStandIn();
    const url = `redis://keybrake:${encodeURIComponent(password)}@127.0.0.1:${redis.port}/3`;
    const proxy = await startProxy({ ...redisDeployment(url), env: { KEYBRAKE_STRIPE_BASE_URL: stripe.url } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const charge = () =>
      proxy.call('/stripe/v1/payment_intents', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ amount: '300', currency: 'usd' }).toString(),
      });
    expect((await charge()).status).toBe(200);
    expect((await charge()).status).toBe(200);
    expect((await charge()).status).toBe(200);
    // The cap holds across the calls: every reservation and settlement landed, in database 3.
    expect((await charge()).status).toBe(429);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(9, 6);
    expect(Number(await redis.cli('-n', '3', 'DBSIZE'))).toBeGreaterThan(0);
    expect(Number(await redis.cli('-n', '0', 'DBSIZE'))).toBe(0);
  });
});
