import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import {
  adminClient,
  json,
  redisDeployment,
  sendJson,
  startFakeVendor,
  startProxy,
  stripeCharge,
  stripeMockProxy,
} from './helpers.js';
import { startRedis } from './redis-server.js';
import { expectNoLeak, serverEnvironment, spawnServer } from './server-process.js';

/** A fake vendor of our own that records when each proxied call (tagged by the test) arrived. */
async function countingVendor() {
  return startFakeVendor((request, response) =>
    sendJson(response, 200, {
      id: 'pi_1',
      amount: Number(new URLSearchParams(request.body).get('amount')),
      currency: 'usd',
    }),
  );
}

describe('Redis failures fail closed (real redis-server, fake vendor)', () => {
  it('Redis stopped mid-load: every call in the outage gets 503, the vendor gets nothing, then it recovers without a restart', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    const vendor = await countingVendor();
    const shared = { ...redisDeployment(redis.url), redisTimeoutMs: 500 };
    const replicas = await Promise.all(
      [1, 2].map(() => startProxy({ ...shared, env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } })),
    );
    const key = await replicas[0]!.issueKey({
      vendor: 'stripe',
      usd_cap: 100_000,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });

    const calls: { started: number; ended: number; status: number; code?: string; n: number }[] = [];
    let stop = false;
    let n = 0;
    const load = Array.from({ length: 16 }, async (_, worker) => {
      while (!stop) {
        const id = (n += 1);
        const started = performance.now();
        const response = await stripeCharge(replicas[worker % 2]!, key.vault_key, 100, { 'x-test-call': String(id) });
        const body = await json(response);
        calls.push({ started, ended: performance.now(), status: response.status, code: body.error?.code, n: id });
      }
    });
    await sleep(700);
    await redis.stop();
    const outageStart = performance.now();
    const arrivedBeforeOutage = vendor.received.length;
    await sleep(400);
    const ready = await replicas[1]!.call('/readyz');
    expect(ready.status).toBe(503);
    await sleep(800);
    const outageEnd = performance.now();
    await redis.start();
    // Recovered: the first call after the restart that succeeds, with no proxy restarted.
    let recoveredAt = 0;
    while (recoveredAt === 0) {
      const ok = calls.find((c) => c.started > outageEnd && c.status === 200);
      if (ok) recoveredAt = ok.ended;
      else await sleep(20);
    }
    await sleep(1000);
    stop = true;
    await Promise.all(load);

    const duringOutage = calls.filter((c) => c.started > outageStart && c.ended < outageEnd);
    expect(duringOutage.length).toBeGreaterThan(20);
    expect(duringOutage.filter((c) => c.status !== 503 || c.code !== 'store_unavailable')).toEqual([]);
    const startedInOutage = new Set(
      calls.filter((c) => c.started > outageStart && c.started < outageEnd).map((c) => String(c.n)),
    );
    const leaked = vendor.received.filter((r) => startedInOutage.has(String(r.headers['x-test-call'])));
    expect(leaked).toHaveLength(0);
    const afterRecovery = calls.filter((c) => c.started > recoveredAt);
    expect(afterRecovery.length).toBeGreaterThan(20);
    expect(afterRecovery.filter((c) => c.status !== 200)).toEqual([]);
    expect((await replicas[0]!.call('/readyz')).status).toBe(200);
    console.log(
      `[figures] Redis down for ${(outageEnd - outageStart).toFixed(0)} ms mid-load: ${duringOutage.length} calls in the outage, all 503; ` +
        `vendor got ${leaked.length} of them (${arrivedBeforeOutage} before, ${vendor.received.length} in all); ${afterRecovery.length} calls after recovery, all 200; recovered ${(recoveredAt - outageEnd).toFixed(0)} ms after Redis was started again`,
    );
  });

  it('Redis not answering in time (CLIENT PAUSE) gives 503 and forwards nothing', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    const vendor = await countingVendor();
    const proxy = await startProxy({
      store: 'redis',
      redisUrl: redis.url,
      redisTimeoutMs: 300,
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    await redis.cli('client', 'pause', '1500', 'ALL');
    const response = await stripeCharge(proxy, key.vault_key, 100);
    expect(response.status).toBe(503);
    expect((await json(response)).error.code).toBe('store_unavailable');
    expect(vendor.received).toHaveLength(0);
    await sleep(1600);
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
  });

  it.each([
    ['one Redis', () => inject('redisUrl')],
    ['a 3-master Redis Cluster', () => inject('redisClusterUrl')],
  ])('SCRIPT FLUSH mid-run on %s costs no failed request', async (_name, url) => {
    const proxy = await stripeMockProxy({ store: 'redis', redisUrl: url() });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100_000,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const seeds = url()
      .replace(/^redis(\+cluster)?:\/\//, '')
      .split(',');
    const nodes = seeds.map((seed) => new Redis(Number(seed.split(':')[1]), seed.split(':')[0] as string));
    onTestFinished(() => nodes.forEach((node) => node.disconnect()));
    const statuses: number[] = [];
    for (let round = 0; round < 6; round += 1) {
      if (round === 3) for (const node of nodes) expect(await node.script('FLUSH')).toBe('OK');
      const batch = await Promise.all(Array.from({ length: 50 }, () => stripeCharge(proxy, key.vault_key, 100)));
      statuses.push(...batch.map((r) => r.status));
    }
    expect(statuses.filter((s) => s !== 200)).toEqual([]);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(300);
  });

  it('a replica that dies mid-call leaves a reservation that another replica turns into unknown spend', async () => {
    const vendor = await startFakeVendor(() => undefined); // never answers
    const { apiKey, secrets, env } = serverEnvironment({
      KEYBRAKE_REDIS_URL: inject('redisUrl'),
      KEYBRAKE_REDIS_PREFIX: `t:${randomUUID()}:`,
      KEYBRAKE_RESERVATION_TTL_MS: '1500',
      KEYBRAKE_STRIPE_BASE_URL: vendor.url,
    });
    const dying = await spawnServer(env);
    const survivor = await spawnServer(env);
    onTestFinished(() => void survivor.child.kill('SIGTERM'));
    const admin = async (url: string, method: string, path: string, body?: unknown) =>
      (await adminClient(url, apiKey)(method, path, body)).body;
    const key = await admin(dying.url, 'POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
    });
    void fetch(`${dying.url}/stripe/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=1700&currency=usd',
    }).catch(() => undefined);
    while (vendor.received.length === 0) await sleep(20);
    expect((await admin(survivor.url, 'GET', `/vault/keys/${key.key_id}`)).reserved_usd).toBe(17);
    dying.child.kill('SIGKILL');

    let state = await admin(survivor.url, 'GET', `/vault/keys/${key.key_id}`);
    for (let i = 0; i < 100 && state.reserved_usd !== 0; i += 1) {
      await sleep(100);
      state = await admin(survivor.url, 'GET', `/vault/keys/${key.key_id}`);
    }
    expect(state).toMatchObject({ reserved_usd: 0, spent_usd: 17, unknown_usd: 17, remaining_usd: 33 });
    const { calls } = await admin(survivor.url, 'GET', `/vault/keys/${key.key_id}/calls`);
    expect(calls).toMatchObject([{ outcome: 'unknown', reason: 'interrupted', cost_usd: 17 }]);
    expect((await admin(survivor.url, 'GET', '/audit/verify')).ok).toBe(true);
    expectNoLeak(dying.output() + survivor.output(), [...Object.values(secrets), key.vault_key]);
  });
});
