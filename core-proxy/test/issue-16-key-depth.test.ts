import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { MAX_KEY_DEPTH } from '../src/keys/key-depth.js';
import { hashVaultKey, newVaultKey } from '../src/keys/vault-keys.js';
import {
  TEST_STORE,
  json,
  sendJson,
  startFakeVendor,
  startProxy,
  stripeMockProxy,
  stripeCharge,
  type TestProxy,
} from './helpers.js';

/**
 * Regression: issue 16 part 1. A root key with `usd_cap: 10` and a chain of 40 children let a $50
 * charge through the deepest one: the ancestry walks stopped at 16 (32 in Lua) and issuance set
 * no depth limit. Now one constant, `MAX_KEY_DEPTH`, bounds issuance, and every walk covers it.
 * Runs on the embedded store, and in the Redis project on one Redis and on a Redis Cluster.
 */
const targets: [string, string | undefined][] =
  TEST_STORE === 'redis'
    ? [
        ['one Redis', inject('redisUrl')],
        ['a 3-master Redis Cluster', inject('redisClusterUrl')],
      ]
    : [['the embedded store', undefined]];

const allowed = ['POST /v1/payment_intents'];

/** Issues a root key and `depth` descendants, each the child of the one before; returns them root first. */
async function issueChain(proxy: TestProxy, depth: number, rootFields: Record<string, unknown> = {}) {
  const chain = [await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: allowed, ...rootFields })];
  for (let i = 0; i < depth; i += 1) {
    chain.push(
      await proxy.issueKey({
        vendor: 'stripe',
        usd_cap: 1000,
        allowed_endpoints: allowed,
        parent_key_id: chain.at(-1)!.key_id,
      }),
    );
  }
  return chain;
}

describe.each(targets)('issue 16: key depth, on %s', (_name, redisUrl) => {
  const start = (): Promise<TestProxy> => stripeMockProxy({ redisUrl });

  it(`issues keys below and at the limit, refuses one ancestor more with 400 key_depth_exceeded`, async () => {
    expect(MAX_KEY_DEPTH).toBeGreaterThanOrEqual(2);
    const proxy = await start();
    const chain = await issueChain(proxy, MAX_KEY_DEPTH);
    // Below the limit a key still takes children, also several (a sibling at the deepest level).
    const sibling = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 5,
      allowed_endpoints: allowed,
      parent_key_id: chain[MAX_KEY_DEPTH - 1]!.key_id,
    });
    expect(sibling.parent_key_id).toBe(chain[MAX_KEY_DEPTH - 1]!.key_id);

    for (const parent of [chain[MAX_KEY_DEPTH]!, sibling]) {
      const refused = await proxy.admin('POST', '/vault/keys', {
        vendor: 'stripe',
        usd_cap: 1,
        allowed_endpoints: allowed,
        expires_in: '1h',
        parent_key_id: parent.key_id,
      });
      expect(refused.status).toBe(400);
      expect(refused.body.error.code).toBe('key_depth_exceeded');
      expect(refused.body.error.message).toContain(String(MAX_KEY_DEPTH));
    }
  });

  it(`the original 40-deep chain is refused at issuance, at depth MAX_KEY_DEPTH + 1`, async () => {
    const proxy = await start();
    const statuses: number[] = [];
    let parent = (await proxy.issueKey({ vendor: 'stripe', usd_cap: 10, allowed_endpoints: allowed })).key_id;
    for (let depth = 1; depth <= 40; depth += 1) {
      const issued = await proxy.admin('POST', '/vault/keys', {
        vendor: 'stripe',
        usd_cap: 1000,
        allowed_endpoints: allowed,
        expires_in: '1h',
        parent_key_id: parent,
      });
      statuses.push(issued.status);
      if (issued.status !== 201) {
        expect(issued.body.error.code).toBe('key_depth_exceeded');
        continue;
      }
      parent = issued.body.key_id;
    }
    expect(statuses).toEqual([
      ...Array<number>(MAX_KEY_DEPTH).fill(201),
      ...Array<number>(40 - MAX_KEY_DEPTH).fill(400),
    ]);
  });

  it(`a $50 charge through the deepest permitted key under a root usd_cap 10 is a cap hit (stripe-mock)`, async () => {
    const proxy = await start();
    const chain = await issueChain(proxy, MAX_KEY_DEPTH);
    const root = chain[0]!;
    const deepest = chain[MAX_KEY_DEPTH]!;

    const over = await stripeCharge(proxy, deepest.vault_key, 5000);
    expect(over.status).toBe(429);
    expect(over.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect((await json(over)).error.code).toBe('cap_exhausted');

    // A charge that fits counts on every ancestor, the root included; the next one that would
    // pass the root's cap is refused.
    const fits = await stripeCharge(proxy, deepest.vault_key, 600);
    expect(fits.status).toBe(200);
    const rest = await stripeCharge(proxy, deepest.vault_key, 500);
    expect(rest.status).toBe(429);
    for (const key of chain) {
      const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
      expect(state.spent_usd, `spend of ${key.key_id}`).toBe(6);
      expect(state.reserved_usd).toBe(0);
    }
    const rootState = (await proxy.admin('GET', `/vault/keys/${root.key_id}`)).body;
    expect(rootState.spent_usd).toBeLessThanOrEqual(10);
  });

  it(`revocation and taint of the root reach the deepest permitted key`, async () => {
    const proxy = await start();
    const revoked = await issueChain(proxy, MAX_KEY_DEPTH, { usd_cap: 100 });
    const tainted = await issueChain(proxy, MAX_KEY_DEPTH, { usd_cap: 100 });
    expect((await proxy.admin('DELETE', `/vault/keys/${revoked[0]!.key_id}`)).status).toBe(200);
    expect((await proxy.admin('POST', `/vault/keys/${tainted[0]!.key_id}/taint`)).status).toBe(200);

    const deepRevoked = revoked[MAX_KEY_DEPTH]!;
    expect((await proxy.admin('GET', `/vault/keys/${deepRevoked.key_id}`)).body.status).toBe('revoked');
    const refused = await stripeCharge(proxy, deepRevoked.vault_key, 100);
    expect(refused.status).toBe(401);
    expect((await json(refused)).error.code).toBe('vault_key_revoked');

    const deepTainted = tainted[MAX_KEY_DEPTH]!;
    expect((await proxy.admin('GET', `/vault/keys/${deepTainted.key_id}`)).body.tainted).toBe(true);
    const blocked = await stripeCharge(proxy, deepTainted.vault_key, 100);
    expect(blocked.status).toBe(403);
    expect((await json(blocked)).error.code).toBe('tainted_request_refused');
  });
});

/**
 * A chain of `depth` descendants under a `usd_cap: 10` root, written straight into the store as
 * a version without the depth limit could have left it. Returns the deepest key's vault key.
 */
async function writeLegacyChain(proxy: TestProxy, redisUrl: string | undefined, depth: number): Promise<string> {
  const now = Date.now();
  const ids = Array.from({ length: depth + 1 }, () => `key_legacy_${randomUUID()}`);
  const vaultKey = newVaultKey();
  const keyHash = (i: number): string => (i === depth ? hashVaultKey(vaultKey) : hashVaultKey(newVaultKey()));
  const endpoints = JSON.stringify(allowed);
  if (redisUrl === undefined) {
    const db = new Database(join(proxy.dataDir, 'keybrake.sqlite3'));
    onTestFinished(() => void db.close());
    const insert = db.prepare(
      `INSERT INTO vault_keys (key_id, key_hash, vendor, cap, allowed_endpoints, parent_key_id, created_at, expires_at)
         VALUES (?, ?, 'stripe', ?, ?, ?, ?, ?)`,
    );
    db.transaction(() => {
      ids.forEach((id, i) =>
        insert.run(
          id,
          keyHash(i),
          i === 0 ? 10_000_000 : 1_000_000_000,
          endpoints,
          i === 0 ? null : ids[i - 1],
          now,
          now + 3600_000,
        ),
      );
    })();
    return vaultKey;
  }
  const cluster = redisUrl.startsWith('redis+cluster://');
  const seeds = redisUrl
    .replace(/^redis(\+cluster)?:\/\//, '')
    .split(',')
    .map((seed) => ({ host: seed.split(':')[0] as string, port: Number(seed.split(':')[1]) }));
  const redis = cluster
    ? new Cluster(seeds, { keyPrefix: proxy.redisPrefix })
    : new Redis(redisUrl, { keyPrefix: proxy.redisPrefix });
  onTestFinished(() => redis.disconnect());
  const root = ids[0] as string;
  for (const [i, id] of ids.entries()) {
    const hash = keyHash(i);
    const key = `{vk:${root}}:k:${id}`;
    await redis.hset(key, {
      key_id: id, key_hash: hash, vendor: 'stripe', daily_cap: '', cap: i === 0 ? 10_000_000 : 1_000_000_000,
      allowed: endpoints, label: '', parent: i === 0 ? '' : ids[i - 1], root, tainted: '0',
      created_at: now, expires_at: now + 3600_000, spent: 0, reserved: 0, unknown: 0,
    }); // prettier-ignore
    await redis.sadd(`{vk:${root}}:members`, `${proxy.redisPrefix}${key}`);
    await redis.set(`h:${hash}`, `${id} ${root}`);
    await redis.set(`root:${id}`, root);
  }
  await redis.sadd('shards', root);
  return vaultKey;
}

describe.each(targets)(
  'issue 16: a chain deeper than MAX_KEY_DEPTH written before the limit, on %s',
  (_name, redisUrl) => {
    it('is refused on the proxy with 400 key_depth_exceeded and never reaches the vendor (fake vendor)', async () => {
      const vendor = await startFakeVendor((request, response) => {
        sendJson(response, 200, { id: 'pi_1', object: 'payment_intent', amount: 5000, currency: 'usd' });
      });
      const proxy = await startProxy({ redisUrl, env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
      const vaultKey = await writeLegacyChain(proxy, redisUrl, 40);
      const response = await stripeCharge(proxy, vaultKey, 5000);
      expect(response.status).toBe(400);
      expect((await json(response)).error.code).toBe('key_depth_exceeded');
      expect(vendor.received).toHaveLength(0);
    });
  },
);
