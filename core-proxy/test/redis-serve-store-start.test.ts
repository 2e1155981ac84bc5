import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { adminClient } from './helpers.js';
import { startRedis } from './redis-server.js';
import { serverEnvironment, spawnServer } from './server-process.js';

const KEY = { vendor: 'stripe', usd_cap: 10, allowed_endpoints: ['POST /v1/payment_intents'], expires_in: '1h' };

/**
 * Found by CI on a fresh machine: a `keybrake serve` replica on Redis listened before its
 * connection to Redis was up, so the first call after "Server listening" could get 503
 * `store_unavailable` (issue 26's alert test issued its key there). An acceptance test that starts
 * `pnpm serve` and calls it as soon as the port answers does exactly that. `serve` now waits for
 * the store to answer before it listens, for 10 s at most; past that it listens anyway, and fails
 * closed until the store is back.
 */
describe('keybrake serve on Redis: listening means the store answers', () => {
  it('started while Redis is still down, it listens once Redis is up, and its very first call succeeds', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    await redis.stop();
    const { env, apiKey } = serverEnvironment({ KEYBRAKE_REDIS_URL: `${redis.url}/0` });
    const serving = spawnServer(env);
    // Redis comes up a moment after the replica started: the replica must not listen before.
    await sleep(1500);
    await redis.start();
    const server = await serving;
    onTestFinished(async () => {
      server.child.kill('SIGTERM');
      await server.exited;
    });
    const issued = await adminClient(server.url, apiKey)('POST', '/vault/keys', KEY);
    expect(issued.status, JSON.stringify(issued.body)).toBe(201);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
  });

  it('with Redis down past the wait, it listens anyway, fails closed, and recovers by itself', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    await redis.stop();
    const { env, apiKey } = serverEnvironment({ KEYBRAKE_REDIS_URL: `${redis.url}/0` });
    const server = await spawnServer(env);
    onTestFinished(async () => {
      server.child.kill('SIGTERM');
      await server.exited;
    });
    expect(server.output()).toContain('the store is not reachable: listening anyway');
    const admin = adminClient(server.url, apiKey);
    expect((await fetch(`${server.url}/readyz`)).status).toBe(503);
    const refused = await admin('POST', '/vault/keys', KEY);
    expect(refused.status).toBe(503);
    expect(refused.body.error.code).toBe('store_unavailable');
    await redis.start();
    // Recovers without a restart: the client reconnects by itself.
    let ready = 503;
    while (ready !== 200) {
      await sleep(100);
      ready = (await fetch(`${server.url}/readyz`)).status;
    }
    expect((await admin('POST', '/vault/keys', KEY)).status).toBe(201);
  });
});
