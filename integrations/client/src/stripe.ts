import Stripe from 'stripe';

/** Options of {@link stripeOptions}. */
export interface StripeProxyOptions {
  /** Retries of the Stripe SDK (with its own idempotency keys, replayed by the proxy). @default 2 */
  readonly maxNetworkRetries?: number;
  /** @default 80000, the Stripe SDK's own */
  readonly timeout?: number;
}

/**
 * Constructor options that point the official `stripe` SDK at a Keybrake proxy. The SDK keeps its
 * own retries and timeouts; a cap hit surfaces as a `StripeRateLimitError` (status 429) that
 * `isCapHit` recognises and that the SDK never retries (the proxy sends `Stripe-Should-Retry: false`).
 *
 * @example new Stripe(vaultKey, stripeOptions('http://keybrake:8080'))
 */
export function stripeOptions(proxyUrl: string, options: StripeProxyOptions = {}): Stripe.StripeConfig {
  const url = new URL(proxyUrl);
  const prefix = `${url.pathname.replace(/\/+$/, '')}/stripe`;
  const base = Stripe.createNodeHttpClient();
  // The SDK has no base-path option: prefix every path with the proxy's `/stripe` route.
  const httpClient = Object.create(base) as typeof base;
  httpClient.makeRequest = (host, port, path, ...rest) => base.makeRequest(host, port, `${prefix}${path}`, ...rest);
  return {
    host: url.hostname,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    protocol: url.protocol === 'https:' ? 'https' : 'http',
    httpClient,
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    ...(options.timeout === undefined ? {} : { timeout: options.timeout }),
  };
}
