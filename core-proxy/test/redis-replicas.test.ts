import { describe, expect, inject, it } from 'vitest';
import { json, redisDeployment, stripeMockProxy, stripeCharge, type TestProxy } from './helpers.js';

/** Three proxy replicas of one deployment: same Redis and prefix, same secrets, separate processes' state. */
async function startReplicas(redisUrl: string): Promise<TestProxy[]> {
  const shared = redisDeployment(redisUrl);
  return Promise.all([1, 2, 3].map(() => stripeMockProxy(shared)));
}

const amountOf = (i: number) => 100 + ((i * 7919) % 401);

describe.each([
  ['one Redis', () => inject('redisUrl')],
  ['a 3-master Redis Cluster', () => inject('redisClusterUrl')],
])('three replicas on %s (stripe-mock)', (_name, url) => {
  it('3,000 concurrent calls spread over the replicas never take spend past the cap', async () => {
    const replicas = await startReplicas(url());
    const capUsd = 300;
    const key = await replicas[0]!.issueKey({
      vendor: 'stripe',
      usd_cap: capUsd,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 3000 }, async (_, i) => {
        const response = await stripeCharge(replicas[i % 3]!, key.vault_key, amountOf(i));
        const body = await json(response);
        return { i, status: response.status, body, capHit: response.headers.get('x-keybrake-cap-hit') };
      }),
    );
    const elapsedMs = performance.now() - started;
    const forwarded = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(forwarded.length + refused.length).toBe(3000);
    expect(refused.every((r) => r.capHit === 'true')).toBe(true);
    const chargedCents = forwarded.reduce((sum, r) => sum + (r.body.amount as number), 0);
    expect(chargedCents).toBeLessThanOrEqual(capUsd * 100);
    const smallestRefused = Math.min(...refused.map((r) => amountOf(r.i)));
    expect(capUsd * 100 - chargedCents).toBeLessThan(smallestRefused);

    const heads = new Set<string>();
    for (const replica of replicas) {
      const state = (await replica.admin('GET', `/vault/keys/${key.key_id}`)).body;
      expect(state.spent_usd).toBeCloseTo(chargedCents / 100, 6);
      expect(state.reserved_usd).toBe(0);
      const verify = (await replica.admin('GET', '/audit/verify')).body;
      expect(verify).toMatchObject({ ok: true, records: 3000 });
      heads.add(verify.head);
    }
    expect(heads.size).toBe(1);
    const { calls } = (await replicas[2]!.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls).toHaveLength(3000);
    expect(new Set(calls.map((c: { seq: number }) => c.seq)).size).toBe(3000);
    console.log(
      `[figures] ${_name}: 3 replicas, 3000 concurrent calls, cap $${capUsd}: forwarded ${forwarded.length} ` +
        `($${(chargedCents / 100).toFixed(2)}), refused ${refused.length}, left $${((capUsd * 100 - chargedCents) / 100).toFixed(2)} ` +
        `(smallest refused $${(smallestRefused / 100).toFixed(2)}), ${elapsedMs.toFixed(0)} ms, ${((3000 / elapsedMs) * 1000).toFixed(0)} calls/s`,
    );
  });

  it('a revoke on one replica stops the very next call on the others, warm caches or not', async () => {
    const [a, b, c] = await startReplicas(url());
    const key = await a!.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'] });
    // Warm every replica's cache of this key.
    for (const replica of [a!, b!, c!]) expect((await stripeCharge(replica, key.vault_key, 100)).status).toBe(200);
    expect((await a!.admin('DELETE', `/vault/keys/${key.key_id}`)).status).toBe(200);
    for (const replica of [b!, c!]) {
      const response = await stripeCharge(replica, key.vault_key, 100);
      expect(response.status).toBe(401);
      expect((await json(response)).error.code).toBe('vault_key_revoked');
      // A call that would fail a later check still reports the revocation first.
      const other = await replica.call('/stripe/v1/charges', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}` },
      });
      expect((await json(other)).error.code).toBe('vault_key_revoked');
    }
  });

  it('a taint on one replica holds for the very next call on the others, and for a child issued anywhere', async () => {
    const [a, b, c] = await startReplicas(url());
    const parent = await a!.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const child = await b!.issueKey({
      vendor: 'stripe',
      usd_cap: 100,
      allowed_endpoints: ['POST /v1/payment_intents'],
      parent_key_id: parent.key_id,
    });
    // Warm every replica's cache of both keys, untainted.
    for (const replica of [a!, b!, c!]) {
      for (const key of [parent, child]) expect((await stripeCharge(replica, key.vault_key, 100)).status).toBe(200);
    }
    expect((await c!.admin('POST', `/vault/keys/${parent.key_id}/taint`)).body).toEqual({
      key_id: parent.key_id,
      tainted: true,
    });
    for (const replica of [a!, b!]) {
      for (const key of [parent, child]) {
        const response = await stripeCharge(replica, key.vault_key, 100);
        expect(response.status).toBe(403);
        expect((await json(response)).error.code).toBe('tainted_request_refused');
      }
    }
    // One way: a new child asking for tainted: false is tainted all the same.
    const later = await a!.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
      parent_key_id: parent.key_id,
      tainted: false,
    });
    expect(later.tainted).toBe(true);
    expect((await stripeCharge(b!, later.vault_key, 100)).status).toBe(403);
  });

  it('an idempotent retry sent to another replica is replayed, not re-forwarded', async () => {
    const [a, b] = await startReplicas(url());
    const key = await a!.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'] });
    const first = await stripeCharge(a!, key.vault_key, 2500, { 'idempotency-key': 'run-1/charge/cus_1' });
    const firstBody = await first.text();
    const retry = await stripeCharge(b!, key.vault_key, 2500, { 'idempotency-key': 'run-1/charge/cus_1' });
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.text()).toBe(firstBody);
    const state = (await b!.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBe(25);
    const { calls } = (await b!.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((call: { outcome: string }) => call.outcome)).toEqual(['forwarded', 'replayed']);
  });

  it('audit verify stays ok on one replica while the others are writing and sealing', async () => {
    const [a, b, c] = await startReplicas(url());
    const key = await a!.issueKey({
      vendor: 'stripe',
      usd_cap: 10_000,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    let writing = true;
    const traffic = (async () => {
      for (let round = 0; round < 40; round += 1) {
        // Listing calls seals the family's new records: the chain keeps growing under the verifier.
        await Promise.all([
          ...Array.from({ length: 10 }, (_, i) => stripeCharge(i % 2 ? a! : b!, key.vault_key, 100)),
          a!.admin('GET', `/vault/keys/${key.key_id}/calls`),
        ]);
      }
      writing = false;
    })();
    const verdicts: { ok: boolean }[] = [];
    while (writing) verdicts.push((await c!.admin('GET', '/audit/verify')).body);
    await traffic;
    expect(verdicts.length).toBeGreaterThan(3);
    expect(verdicts.filter((verdict) => !verdict.ok)).toEqual([]);
    expect((await c!.admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: 400 });
  });

  it('children on one replica and their parent cap on another share one budget', async () => {
    const [a, b, c] = await startReplicas(url());
    const parent = await a!.issueKey({
      vendor: 'stripe',
      usd_cap: 30,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const child = await b!.issueKey({
      vendor: 'stripe',
      usd_cap: 25,
      allowed_endpoints: ['POST /v1/payment_intents'],
      parent_key_id: parent.key_id,
    });
    const results = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        stripeCharge([a!, b!, c!][i % 3]!, i % 2 ? child.vault_key : parent.vault_key, 100),
      ),
    );
    expect(results.filter((r) => r.status === 200)).toHaveLength(30);
    expect((await c!.admin('GET', `/vault/keys/${parent.key_id}`)).body.spent_usd).toBe(30);
  });
});
