import { matchesRoute, parseEndpointPattern } from '../allowlist.js';
import { InvalidRequestError, RequestNotPriceableError, httpError } from '../errors.js';
import { type Micros, usdToMicros } from '../money.js';
import type { PricingOptions } from '../cost-rules.js';
import {
  type VendorModule,
  type VendorRequest,
  isSuccess,
  readBasic,
  readBearer,
  readJson,
  readParams,
} from './vendor.js';
import { countHeader } from './request-params.js';

/** Currencies Stripe counts in whole units (no minor unit). */
const ZERO_DECIMAL = new Set([
  'bif',
  'clp',
  'djf',
  'gnf',
  'jpy',
  'kmf',
  'krw',
  'mga',
  'pyg',
  'rwf',
  'ugx',
  'vnd',
  'vuv',
  'xaf',
  'xof',
  'xpf',
]);
/** Currencies Stripe counts in thousandths. */
const THREE_DECIMAL = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

/** Headers that make a call act on another Stripe account (Connect): refused, see {@link stripe}. */
const ACCOUNT_HEADERS = ['stripe-account', 'stripe-context'];
/** A Stripe API version (`2024-06-20`, `2025-03-31.basil`), with optional beta flags (`; feature_beta=v1`). */
const STRIPE_VERSION = /^\d{4}-\d{2}-\d{2}(\.[a-z]+)?(;\s*[a-z0-9_]+=v\d+)*$/;

const COSTED = [parseEndpointPattern('POST /v1/payment_intents'), parseEndpointPattern('POST /v1/charges')];

/** Converts a Stripe amount in the currency's minor units to micro-dollars, rounding up. */
export function stripeAmountToMicros(amount: number, currency: string, pricing: PricingOptions): Micros {
  const code = currency.toLowerCase();
  const rate = code === 'usd' ? 1 : pricing.fxRates[code];
  if (rate === undefined) {
    throw httpError(
      400,
      'currency_not_supported',
      `Currency "${code}" has no configured USD rate (set KEYBRAKE_FX_RATES, e.g. ${code}=1.0).`,
    );
  }
  const decimals = ZERO_DECIMAL.has(code) ? 0 : THREE_DECIMAL.has(code) ? 3 : 2;
  return usdToMicros((amount / 10 ** decimals) * rate);
}

function isCosted(request: VendorRequest): boolean {
  return COSTED.some((pattern) => matchesRoute(pattern, request.method, request.segments));
}

/** Stripe: Bearer secret key; cost = `amount` of payment intents and charges. */
export const stripe: VendorModule = {
  name: 'stripe',
  defaultBaseUrl: 'https://api.stripe.com',
  secretNames: ['STRIPE_SECRET_KEY'],
  costedEndpoints: COSTED,

  readVaultKey(headers) {
    // The SDK sends Bearer; `curl -u key:` sends Basic with the key as username.
    return readBearer(headers) ?? readBasic(headers)?.[0];
  },

  checkHeaders(request) {
    // Regression: issue 16. `Stripe-Account` acts on any connected account of the platform: a
    // vault key is scoped to the proxy's own account, so a key could otherwise reach them all.
    for (const name of ACCOUNT_HEADERS) {
      if (request.headers[name] !== undefined) {
        throw httpError(
          403,
          'endpoint_not_allowed',
          `The ${name} header (acting on a connected account) is not allowed with a vault key.`,
        );
      }
    }
    // One well-formed version, or none (the account's default): never two joined into one.
    const version = request.headers['stripe-version'];
    if (
      version !== undefined &&
      (countHeader(request.rawHeaders, 'stripe-version') > 1 || !STRIPE_VERSION.test(String(version)))
    ) {
      throw new InvalidRequestError('Stripe-Version must be one API version, such as 2024-06-20 or 2025-03-31.basil.');
    }
  },

  prepareUpstream(request, secrets) {
    return { segments: request.segments, headers: { authorization: `Bearer ${secrets.STRIPE_SECRET_KEY}` } };
  },

  estimateCost(request, pricing) {
    if (!isCosted(request)) return undefined;
    const params = readParams(request);
    // Exactly one amount and one currency, wherever Stripe reads them (body or query): a repeat
    // such as `currency=jpy&currency=usd` is refused, not read one way here and another there.
    const amount = params.integer('amount');
    const currency = params.one('currency');
    if (amount === undefined || amount === 0) return 0; // Stripe refuses a charge without an amount.
    if (currency === undefined) {
      // Stripe refuses it too, but a default would guess: an account's own currency may be worth more than USD.
      throw new RequestNotPriceableError('A Stripe amount without a currency cannot be priced.');
    }
    return stripeAmountToMicros(amount, currency.trim(), pricing);
  },

  settleCost(request, response, estimate, pricing) {
    if (!isCosted(request) || !isSuccess(response.status)) return 0;
    const body = readJson(response.body) as { amount?: unknown; currency?: unknown } | undefined;
    if (typeof body?.amount === 'number' && typeof body.currency === 'string') {
      try {
        return stripeAmountToMicros(body.amount, body.currency, pricing);
      } catch {
        return estimate;
      }
    }
    return estimate;
  },

  vendorRequestId(response) {
    const id = response.headers['request-id'];
    return typeof id === 'string' ? id : undefined;
  },
};
