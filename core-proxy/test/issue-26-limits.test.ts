import type { ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import {
  type TestProxy,
  json,
  sendJson,
  startFakeVendor,
  startProxy,
  stripeCharge,
  stripeMockProxy,
} from './helpers.js';

/** A minute boundary plus 500 ms: windows in these tests start where the test says. */
const MINUTE_START = Math.floor(Date.now() / 60_000) * 60_000 + 60_000;

/**
 * The proxy in front of a fake vendor of ours (stripe-mock answers at once, and these tests must
 * hold calls in flight): `GET /v1/balance` is free, and answers only when the test releases it.
 */
async function heldVendorProxy(startAt = MINUTE_START + 500): Promise<{
  proxy: TestProxy;
  received: () => number;
  release: () => void;
  waitForHeld: (count: number) => Promise<void>;
}> {
  const held: ServerResponse[] = [];
  let holding = false;
  const vendor = await startFakeVendor((_request, response) => {
    if (holding) held.push(response);
    else sendJson(response, 200, { object: 'balance', available: [] });
  });
  const proxy = await startProxy({ startAt, frozenClock: true, env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
  return {
    proxy,
    received: () => vendor.received.length,
    release: () => {
      holding = false;
      for (const response of held.splice(0)) sendJson(response, 200, { object: 'balance', available: [] });
    },
    waitForHeld: async (count: number) => {
      holding = true;
      while (held.length < count) await new Promise((resolve) => setTimeout(resolve, 5));
    },
  };
}

function balance(proxy: TestProxy, vaultKey: string, extra: Record<string, string> = {}): Promise<Response> {
  return proxy.call('/stripe/v1/balance', { headers: { authorization: `Bearer ${vaultKey}`, ...extra } });
}

const BALANCE = ['GET /v1/balance'];

async function expectLimitRefusal(response: Response, code: string, retryAfterS: number): Promise<void> {
  const body = await json(response);
  expect(response.status).toBe(429);
  expect(body.error.code).toBe(code);
  expect(body.error.retry_after_s).toBe(retryAfterS);
  expect(response.headers.get('retry-after')).toBe(String(retryAfterS));
  expect(response.headers.get('x-keybrake-error')).toBe(code);
  // Never the cap hit's header: integrations retry this 429, never a cap hit.
  expect(response.headers.get('x-keybrake-cap-hit')).toBeNull();
  expect(response.headers.get('stripe-should-retry')).toBe('true');
}

describe('issue 26: request and concurrency limits per key', () => {
  it('bad limit values are refused with 400 invalid_request, and good ones are echoed and shown', async () => {
    const proxy = await stripeMockProxy();
    for (const field of ['max_requests_per_second', 'max_requests_per_minute', 'max_concurrent']) {
      for (const value of [0, -1, 1.5, '3', true, 1_000_001, [], {}]) {
        const answer = await proxy.admin('POST', '/vault/keys', {
          vendor: 'stripe',
          usd_cap: 1,
          allowed_endpoints: BALANCE,
          expires_in: '1h',
          [field]: value,
        });
        expect(answer.status, `${field}: ${JSON.stringify(value)}`).toBe(400);
        expect(answer.body.error.code).toBe('invalid_request');
        expect(answer.body.error.message).toContain(field);
      }
    }
    const issued = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: BALANCE,
      max_requests_per_minute: 60,
      max_concurrent: 4,
    });
    const limits = { max_requests_per_second: null, max_requests_per_minute: 60, max_concurrent: 4 };
    expect(issued.limits).toEqual(limits);
    expect((await proxy.admin('GET', `/vault/keys/${issued.key_id}`)).body.limits).toEqual({ ...limits, in_flight: 0 });
    // A key with no limit shows none, and its responses carry no limit header.
    const plain = await proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: BALANCE });
    expect(plain.limits).toBeUndefined();
    expect((await proxy.admin('GET', `/vault/keys/${plain.key_id}`)).body.limits).toBeUndefined();
    const response = await balance(proxy, plain.vault_key);
    expect(response.status).toBe(200);
    expect(response.headers.get('x-keybrake-remaining-usd')).toBe('1.000000');
    expect(response.headers.get('x-keybrake-requests-remaining')).toBeNull();
    expect(response.headers.get('x-keybrake-concurrent-remaining')).toBeNull();
  });

  it('max_requests_per_second: N calls per clock second, the next refused until the second ends, nothing forwarded', async () => {
    const { proxy, received } = await heldVendorProxy();
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: BALANCE,
      max_requests_per_second: 3,
    });
    const remaining: (string | null)[] = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await balance(proxy, key.vault_key);
      expect(response.status).toBe(200);
      remaining.push(response.headers.get('x-keybrake-requests-remaining'));
    }
    expect(remaining).toEqual(['2', '1', '0']);
    await expectLimitRefusal(await balance(proxy, key.vault_key), 'rate_limited', 1);
    expect(received()).toBe(3);
    // Refused calls are not counted: still refused at 999 ms, admitted from the next second.
    proxy.advance(499);
    await expectLimitRefusal(await balance(proxy, key.vault_key), 'rate_limited', 1);
    proxy.advance(1);
    const next = await balance(proxy, key.vault_key);
    expect(next.status).toBe(200);
    expect(next.headers.get('x-keybrake-requests-remaining')).toBe('2');
    expect(received()).toBe(4);

    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((call: { outcome: string; reason: string | null }) => `${call.outcome}:${call.reason}`)).toEqual([
      'forwarded:null',
      'forwarded:null',
      'forwarded:null',
      'blocked:rate_limited',
      'blocked:rate_limited',
      'forwarded:null',
    ]);
    const metrics = await (await fetch(`${proxy.url}/metrics`)).text();
    expect(metrics).toMatch(/keybrake_limit_refusals_total\{vendor="stripe",reason="rate_limited"\} 2/);
  });

  it('max_requests_per_minute: Retry-After counts to the end of the clock minute', async () => {
    const { proxy } = await heldVendorProxy(MINUTE_START + 20_250);
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: BALANCE,
      max_requests_per_second: 10,
      max_requests_per_minute: 2,
    });
    const first = await balance(proxy, key.vault_key);
    // The tightest window: 1 left this minute (9 this second).
    expect(first.headers.get('x-keybrake-requests-remaining')).toBe('1');
    expect((await balance(proxy, key.vault_key)).status).toBe(200);
    // 39.75 s to the minute's end: 40 whole seconds.
    await expectLimitRefusal(await balance(proxy, key.vault_key), 'rate_limited', 40);
    proxy.advance(39_749);
    await expectLimitRefusal(await balance(proxy, key.vault_key), 'rate_limited', 1);
    proxy.advance(1);
    expect((await balance(proxy, key.vault_key)).status).toBe(200);
  });

  it('max_concurrent: calls in flight are counted, the next refused, and the count released when they settle', async () => {
    const { proxy, received, release, waitForHeld } = await heldVendorProxy();
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: BALANCE, max_concurrent: 2 });
    const holding = waitForHeld(2);
    const inFlight = [balance(proxy, key.vault_key), balance(proxy, key.vault_key)];
    await holding;
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.limits.in_flight).toBe(2);
    await expectLimitRefusal(await balance(proxy, key.vault_key), 'concurrency_limited', 1);
    expect(received()).toBe(2);
    release();
    const answered = await Promise.all(inFlight);
    expect(answered.map((response) => response.status)).toEqual([200, 200]);
    expect(answered.map((response) => response.headers.get('x-keybrake-concurrent-remaining')).sort()).toEqual([
      '0',
      '1',
    ]);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.limits.in_flight).toBe(0);
    const after = await balance(proxy, key.vault_key);
    expect(after.status).toBe(200);
    expect(after.headers.get('x-keybrake-concurrent-remaining')).toBe('1');
  });

  it("children count against every ancestor's limits; a child's own limit binds only its subtree", async () => {
    const { proxy, release, waitForHeld } = await heldVendorProxy();
    const root = await proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: BALANCE, max_concurrent: 3 });
    const middle = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: BALANCE,
      parent_key_id: root.key_id,
      max_requests_per_second: 100,
    });
    const [a, b] = await Promise.all(
      [1, 2].map(() =>
        proxy.issueKey({ vendor: 'stripe', usd_cap: 1, allowed_endpoints: BALANCE, parent_key_id: middle.key_id }),
      ),
    );
    const holding = waitForHeld(3);
    const inFlight = [balance(proxy, a!.vault_key), balance(proxy, a!.vault_key), balance(proxy, b!.vault_key)];
    await holding;
    // Neither child has a limit of its own: the root's max_concurrent refuses them both, and the root.
    for (const key of [a!, b!, root]) {
      await expectLimitRefusal(await balance(proxy, key.vault_key), 'concurrency_limited', 1);
    }
    expect((await proxy.admin('GET', `/vault/keys/${root.key_id}`)).body.limits.in_flight).toBe(3);
    // The middle key's window counted the three grandchildren calls, and none of the refused ones.
    release();
    const answered = await Promise.all(inFlight);
    expect(answered.map((response) => response.status)).toEqual([200, 200, 200]);
    const next = await balance(proxy, b!.vault_key);
    expect(next.status).toBe(200);
    expect(next.headers.get('x-keybrake-requests-remaining')).toBe('96');
    expect(next.headers.get('x-keybrake-concurrent-remaining')).toBe('2');
    expect((await proxy.admin('GET', `/vault/keys/${root.key_id}`)).body.limits.in_flight).toBe(0);
  });

  it('replays of a kept idempotent response are not counted, and a cap hit is answered before a limit', async () => {
    const proxy = await stripeMockProxy({ startAt: MINUTE_START + 100, frozenClock: true });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 3,
      allowed_endpoints: ['POST /v1/payment_intents'],
      max_requests_per_second: 1,
    });
    const first = await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'replay-1' });
    expect(first.status).toBe(200);
    // $3 cap, $1 reserved and settled: exactly $2.000000 left.
    expect(first.headers.get('x-keybrake-remaining-usd')).toBe('2.000000');
    expect(first.headers.get('x-keybrake-requests-remaining')).toBe('0');
    for (let i = 0; i < 3; i += 1) {
      const replay = await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': 'replay-1' });
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
    }
    // Over the cap and over the rate limit: the cap hit, which no retry fixes, is the answer.
    const capped = await stripeCharge(proxy, key.vault_key, 500);
    expect(capped.status).toBe(429);
    expect(capped.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect((await json(capped)).error.code).toBe('cap_exhausted');
    await expectLimitRefusal(await stripeCharge(proxy, key.vault_key, 100), 'rate_limited', 1);
    proxy.advance(1000);
    const second = await stripeCharge(proxy, key.vault_key, 150);
    expect(second.status).toBe(200);
    expect(second.headers.get('x-keybrake-remaining-usd')).toBe('0.500000');
  });
});
