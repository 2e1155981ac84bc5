import Stripe from 'stripe';
import { ApplicationFailure } from '@temporalio/common';
import { describe, expect, it } from 'vitest';
import { sendJson, startFakeVendor, startProxy } from '../../../core-proxy/test/helpers.js';
import { stripeOptions } from '../../client/src/stripe.js';
import { toTemporalFailure } from '../src/failures.js';
import { sealVaultKey, unsealVaultKey } from '../src/seal.js';

/** Real Stripe SDK errors from the real proxy, in front of a fake vendor that rate-limits (named so). */
describe('toTemporalFailure on real Stripe SDK errors (fake vendor)', () => {
  async function stripeError(vendorStatus: number, capUsd: number): Promise<unknown> {
    const vendor = await startFakeVendor((_request, response) =>
      vendorStatus === 429
        ? sendJson(response, 429, { error: { type: 'rate_limit_error', message: 'slow down' } }, { 'retry-after': '3' })
        : sendJson(response, 200, { id: 'pi_1', amount: 500, currency: 'usd' }),
    );
    const proxy = await startProxy({ store: 'embedded', env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: capUsd,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
    return stripe.paymentIntents.create({ amount: 500, currency: 'usd' }).catch((error: unknown) => error);
  }

  it('turns a cap hit into a non-retryable KeybrakeCapExhausted failure', async () => {
    const failure = toTemporalFailure(await stripeError(200, 1));
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'KeybrakeCapExhausted', nonRetryable: true });
  });

  it("keeps a vendor's own 429 retryable, after its Retry-After", async () => {
    const failure = toTemporalFailure(await stripeError(429, 100));
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'KeybrakeVendorRateLimited', nonRetryable: false, nextRetryDelay: 3000 });
  });

  it('issue 26: a limit 429 of the proxy stays retryable, typed by its limit, after its Retry-After; a cap hit stays terminal', async () => {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', amount: 5, currency: 'usd' }),
    );
    // A frozen clock: both calls fall in one second of the proxy's, however slow the machine.
    const proxy = await startProxy({
      store: 'embedded',
      startAt: Date.now(),
      frozenClock: true,
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      max_requests_per_second: 1,
    });
    const stripe = new Stripe(key.vault_key, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
    const attempt = () => stripe.paymentIntents.create({ amount: 5, currency: 'usd' }).catch((error: unknown) => error);
    // Two calls in one second of the proxy's: one admitted, one refused by the per-second window.
    const outcomes = await Promise.all([attempt(), attempt()]);
    const refused = outcomes.find((outcome) => outcome instanceof Error);
    const failure = toTemporalFailure(refused);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'KeybrakeRateLimited', nonRetryable: false, nextRetryDelay: 1000 });
  });

  it('leaves other errors to the retry policy', () => {
    const error = new Error('connection reset');
    expect(toTemporalFailure(error)).toBe(error);
  });
});

describe('sealed vault keys', () => {
  it('round-trips under the secret and refuses another secret or a tampered seal', () => {
    const sealed = sealVaultKey('kb_vk_example', 'secret-a');
    expect(sealed).not.toContain('kb_vk_example');
    expect(unsealVaultKey(sealed, 'secret-a')).toBe('kb_vk_example');
    expect(() => unsealVaultKey(sealed, 'secret-b')).toThrow();
    const [prefix, iv, body, tag] = sealed.split('.');
    const flipped = `${prefix}.${iv}.${Buffer.from(Buffer.from(body!, 'base64url').map((b, i) => (i === 0 ? b ^ 1 : b))).toString('base64url')}.${tag}`;
    expect(() => unsealVaultKey(flipped, 'secret-a')).toThrow();
  });
});
