import Stripe from 'stripe';
import { describe, expect, it } from 'vitest';
import { stripeMockProxy, type TestProxy } from '../../../core-proxy/test/helpers.js';
import {
  LIMIT_REFUSED_EXIT_CODE,
  isCapHit,
  isLimitRefusal,
  keybrakeRefusal,
  limitRefusal,
  retryAfterMs,
  runExec,
} from '../src/index.js';
import { stripeOptions } from '../src/stripe.js';

/** A $1 Stripe key allowed to charge, with `max_requests_per_minute: 1` unless told otherwise. */
async function limitedKey(proxy: TestProxy, fields: Record<string, unknown> = { max_requests_per_minute: 1 }) {
  return proxy.issueKey({
    vendor: 'stripe',
    usd_cap: 1,
    allowed_endpoints: ['POST /v1/payment_intents'],
    expires_in: '1h',
    ...fields,
  });
}

async function stripeFailure(stripe: Stripe, amount: number): Promise<unknown> {
  return stripe.paymentIntents.create({ amount, currency: 'usd' }).then(
    () => undefined,
    (error: unknown) => error,
  );
}

describe('issue 26: the client SDK tells a limit refusal (retryable) from a cap hit (terminal), real proxy and stripe-mock', () => {
  it('official Stripe SDK errors: a limit 429 is a limit refusal with its Retry-After, never a cap hit; a cap hit never a limit refusal', async () => {
    // Window edges belong to the proxy's clock: a frozen one keeps the minute from rolling over mid-test.
    const proxy = await stripeMockProxy({
      startAt: Math.floor(Date.now() / 60_000) * 60_000 + 30_000,
      frozenClock: true,
    });
    const key = await limitedKey(proxy);
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
    expect(await stripeFailure(stripe, 10)).toBeUndefined();
    const limited = await stripeFailure(stripe, 10);
    expect(limitRefusal(limited)).toBe('rate_limited');
    expect(isLimitRefusal(limited)).toBe(true);
    // 30 s left in the clock minute.
    expect(retryAfterMs(limited)).toBe(30_000);
    expect(isCapHit(limited)).toBe(false);
    expect(keybrakeRefusal(limited)).toBeUndefined();

    proxy.advance(60_000);
    const capped = await stripeFailure(stripe, 500);
    expect(isCapHit(capped)).toBe(true);
    expect(isLimitRefusal(capped)).toBe(false);
    expect(retryAfterMs(capped)).toBeUndefined();
  });

  it('fetch Responses: by the proxy header, so a vendor-shaped body alone is not enough', async () => {
    const proxy = await stripeMockProxy({ startAt: Date.now(), frozenClock: true });
    const key = await limitedKey(proxy, { max_concurrent: 1, max_requests_per_second: 1 });
    const charge = () =>
      fetch(`${proxy.url}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'amount=10&currency=usd',
      });
    const answers = await Promise.all([charge(), charge(), charge()]);
    const refused = answers.filter((response) => response.status === 429);
    expect(refused.length).toBeGreaterThanOrEqual(2);
    for (const response of refused) {
      expect(isLimitRefusal(response)).toBe(true);
      expect(isCapHit(response)).toBe(false);
      expect(retryAfterMs(response)).toBeGreaterThanOrEqual(1000);
    }
    const vendorShaped = new Response(JSON.stringify({ error: { code: 'rate_limited' } }), { status: 429 });
    expect(isLimitRefusal(vendorShaped)).toBe(false);
  });

  it('keybrake-exec: a program that gave up after a limit refusal exits 82 (retried by Argo), after its Retry-After; a cap hit stays 75', async () => {
    const proxy = await stripeMockProxy({ startAt: Date.now(), frozenClock: true });
    const script = (amount: number) =>
      `fetch(process.env.KEYBRAKE_PROXY_URL + '/stripe/v1/payment_intents', { method: 'POST', headers: { authorization: 'Bearer ' + process.env.KEYBRAKE_VAULT_KEY, 'content-type': 'application/x-www-form-urlencoded' }, body: 'amount=${amount}&currency=usd' }).then((r) => process.exit(r.status === 200 ? 0 : 1))`;
    const key = await limitedKey(proxy, { max_requests_per_second: 1, max_requests_per_minute: 1 });
    const lines: string[] = [];
    const run = (amount: number) =>
      runExec({
        command: [process.execPath, '-e', script(amount)],
        proxyUrl: proxy.url,
        vaultKey: key.vault_key,
        report: (line) => lines.push(line),
        // Bounded here: a per-minute Retry-After can be a minute long.
        maxRetryAfterS: 1,
      });
    expect((await run(10)).exitCode).toBe(0);
    const started = Date.now();
    expect((await run(10)).exitCode).toBe(LIMIT_REFUSED_EXIT_CODE);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(lines.at(-1)).toContain('exiting 82');
    const capped = await limitedKey(proxy, {});
    const capRun = await runExec({
      command: [process.execPath, '-e', script(500)],
      proxyUrl: proxy.url,
      vaultKey: capped.vault_key,
      report: () => undefined,
    });
    expect(capRun.exitCode).toBe(75);
  });
});
