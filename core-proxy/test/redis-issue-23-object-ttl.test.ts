import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { connectRedis, json, redisDeployment, stripeCharge, stripeMockProxy } from './helpers.js';

const HOUR_MS = 3600 * 1000;
/** The margin past the root's expiry (`OBJECT_TTL_MARGIN_MS` in redis-store.ts). */
const MARGIN_MS = HOUR_MS;

/** The PTTL of every tracked object hash of `objectId` under the deployment's prefix, on every node. */
async function objectTtls(url: string, prefix: string, objectId: string): Promise<number[]> {
  const { client, nodes } = await connectRedis(url);
  onTestFinished(() => client.disconnect());
  const ttls: number[] = [];
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, found] = await node.scan(cursor, 'MATCH', `${prefix}*}:obj:${objectId}`, 'COUNT', 1000);
      cursor = next;
      for (const name of found) ttls.push(await node.pttl(name));
    } while (cursor !== '0');
  }
  return ttls;
}

/**
 * Issue 23, Redis memory: a charge's PaymentIntent stays tracked in Redis so that a later capture
 * or refund settles against its key (issue 20). It was kept 8 days whatever its keys' lifetime,
 * which was the soak's whole memory growth (550 charges a second × 225 bytes). It is now kept until
 * the root of its family expires (no key of the family can call on it after that: a child never
 * outlives its parent), plus a margin, and still across a child's shorter life.
 */
describe.each([
  ['one Redis', () => inject('redisUrl')],
  ['a 3-master Redis Cluster', () => inject('redisClusterUrl')],
])('issue 23: tracked vendor objects live as long as their family on %s (stripe-mock)', (_name, url) => {
  it("a child's PaymentIntent is kept until its root expires, then an hour, not 8 days", async () => {
    const deployment = redisDeployment(url());
    const proxy = await stripeMockProxy(deployment);
    const allowed = ['POST /v1/payment_intents', 'POST /v1/payment_intents/*/capture'];
    const root = await proxy.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: allowed, expires_in: '2h' });
    const child = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: allowed,
      expires_in: '90s',
      parent_key_id: root.key_id,
    });

    const before = Date.now();
    const charged = await stripeCharge(proxy, child.vault_key, 500, { 'idempotency-key': 'object-ttl-1' });
    expect(charged.status).toBe(200);
    const intent = (await json(charged)).id as string;
    expect(intent).toMatch(/^pi_/);
    const rootExpiresAt = Date.parse(root.expires_at);
    const ttls = await objectTtls(url(), deployment.redisPrefix as string, intent);
    expect(ttls).toHaveLength(1);
    const [ttl] = ttls as [number];
    // Until the root expires, plus the margin: not the child's 90 s, not 8 days.
    expect(ttl).toBeLessThanOrEqual(rootExpiresAt - before + MARGIN_MS);
    expect(ttl).toBeGreaterThan(rootExpiresAt - Date.now() + MARGIN_MS - 60_000);

    // The root still settles against it, and the capture keeps the same bound.
    const captured = await proxy.call(`/stripe/v1/payment_intents/${intent}/capture`, {
      method: 'POST',
      headers: { authorization: `Bearer ${root.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: '',
    });
    expect(captured.status).toBe(200);
    expect(captured.headers.get('x-keybrake-key-id')).toBe(root.key_id);
    const [afterCapture] = (await objectTtls(url(), deployment.redisPrefix as string, intent)) as [number];
    expect(afterCapture).toBeLessThanOrEqual(rootExpiresAt - before + MARGIN_MS);
    expect(afterCapture).toBeGreaterThan(rootExpiresAt - Date.now() + MARGIN_MS - 60_000);
  });

  it('a 7-day root keeps its objects 8 days at most', async () => {
    const deployment = redisDeployment(url());
    const proxy = await stripeMockProxy(deployment);
    const root = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '7d',
    });
    const charged = await stripeCharge(proxy, root.vault_key, 500);
    expect(charged.status).toBe(200);
    const intent = (await json(charged)).id as string;
    const [ttl] = (await objectTtls(url(), deployment.redisPrefix as string, intent)) as [number];
    expect(ttl).toBeGreaterThan(7 * 24 * HOUR_MS);
    expect(ttl).toBeLessThanOrEqual(7 * 24 * HOUR_MS + MARGIN_MS);
  });
});
