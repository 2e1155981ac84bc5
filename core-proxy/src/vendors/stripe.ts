import { parseEndpointPattern } from '../allowlist.js';
import { RequestNotPriceableError, httpError } from '../errors.js';
import { type Micros, usdToMicros } from '../money.js';
import { type PricingOptions, usdRate } from '../cost-rules.js';
import {
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  moneyMoving,
  readBasic,
  readBearer,
  readJson,
  readParams,
} from './vendor.js';

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

/** Converts a Stripe amount in the currency's minor units to micro-dollars, rounding up. */
export function stripeAmountToMicros(amount: number, currency: string, pricing: PricingOptions): Micros {
  const code = currency.toLowerCase();
  // Regression: issue 17. `currency=__proto__` found Object.prototype as its "rate" (503, no audit).
  const rate = usdRate(pricing, code);
  if (rate === undefined) {
    const shown = /^[a-z]{3}$/.test(code) ? `"${code}"` : 'this currency';
    throw httpError(
      400,
      'currency_not_supported',
      `Currency ${shown} has no configured USD rate (set KEYBRAKE_FX_RATES, e.g. eur=1.08).`,
    );
  }
  const decimals = ZERO_DECIMAL.has(code) ? 0 : THREE_DECIMAL.has(code) ? 3 : 2;
  return usdToMicros((amount / 10 ** decimals) * rate);
}

/** The one value of a parameter the vendor requires; several different ones are ambiguous. */
function single(params: URLSearchParams, name: string): string {
  const values = [...new Set(params.getAll(name).map((value) => value.trim().toLowerCase()))];
  if (values.length !== 1 || values[0] === '') {
    throw new RequestNotPriceableError(
      values.length > 1 ? `\`${name}\` is ambiguous.` : `\`${name}\` is required to price this call.`,
    );
  }
  return values[0] as string;
}

/** A Stripe amount: a whole number of minor units. Anything else cannot be priced. */
function minorUnits(text: string, name: string): number {
  if (!/^[0-9]{1,15}$/.test(text)) {
    throw new RequestNotPriceableError(`\`${name}\` must be a whole number of minor units.`);
  }
  return Number(text);
}

/** Prices a call that names its own `amount` and `currency` (charges, transfers, payouts, topups). */
function requestAmount(request: VendorRequest, pricing: PricingOptions): Micros {
  const params = readParams(request);
  const amount = minorUnits(single(params, 'amount'), 'amount');
  return stripeAmountToMicros(amount, single(params, 'currency'), pricing);
}

/** What the vendor billed: the amount and `currency` of the object it answered with, else the estimate. */
function answeredAmount(field: string) {
  return (_request: VendorRequest, response: VendorResponse, estimate: Micros, pricing: PricingOptions): Micros => {
    const body = readJson(response.body) as Record<string, unknown> | undefined;
    const amount = body?.[field];
    const currency = body?.currency;
    if (typeof amount !== 'number' || !Number.isSafeInteger(amount) || amount < 0 || typeof currency !== 'string') {
      return estimate;
    }
    try {
      return stripeAmountToMicros(amount, currency, pricing);
    } catch {
      return estimate;
    }
  };
}

/** A call that moves an existing object's amount, which the proxy has not tracked: refused. */
function untrackedObject(what: string) {
  return (): Micros => {
    throw new RequestNotPriceableError(
      `${what}: the proxy does not know the amount this call would move, so it is refused.`,
    );
  };
}

const byRequestAmount = { estimate: requestAmount, settle: answeredAmount('amount') };

/**
 * Every Stripe endpoint that moves money. Charges, transfers, payouts and topups name their
 * amount; calls on an existing PaymentIntent, charge or refund move the object's amount; the rest
 * take a flat cost rule. Regression: issue 17.
 */
const CATALOGUE = [
  moneyMoving('POST /v1/payment_intents', 'a payment (when confirmed)', byRequestAmount),
  moneyMoving('POST /v1/charges', 'a charge', byRequestAmount),
  moneyMoving('POST /v1/payment_intents/*/confirm', "the PaymentIntent's amount", {
    estimate: untrackedObject('PaymentIntent confirm'),
  }),
  moneyMoving('POST /v1/payment_intents/*/capture', "the PaymentIntent's amount, or amount_to_capture", {
    estimate: untrackedObject('PaymentIntent capture'),
  }),
  moneyMoving('POST /v1/payment_intents/*/increment_authorization', 'a larger authorization', {
    estimate: untrackedObject('PaymentIntent increment_authorization'),
  }),
  moneyMoving('POST /v1/charges/*/capture', "the charge's amount", { estimate: untrackedObject('Charge capture') }),
  moneyMoving('POST /v1/refunds', 'a refund', { estimate: untrackedObject('Refund') }),
  moneyMoving('POST /v1/charges/*/refunds', 'a refund', { estimate: untrackedObject('Refund') }),
  moneyMoving('POST /v1/transfers', 'a transfer to a connected account', byRequestAmount),
  moneyMoving('POST /v1/payouts', 'a payout to a bank account', byRequestAmount),
  moneyMoving('POST /v1/topups', 'a top-up of the balance', byRequestAmount),
  moneyMoving('POST /v1/invoices/*/pay', "the invoice's amount due", { settle: answeredAmount('amount_paid') }),
  moneyMoving('POST /v1/subscriptions', "the first invoice's amount"),
  moneyMoving('POST /v1/subscriptions/*', 'a prorated invoice'),
  moneyMoving('POST /v1/checkout/sessions', "the session's total, when the customer pays", {
    settle: answeredAmount('amount_total'),
  }),
];

/** Stripe: Bearer secret key; money-moving calls priced from their amount (see the catalogue). */
export const stripe: VendorModule = {
  name: 'stripe',
  defaultBaseUrl: 'https://api.stripe.com',
  secretNames: ['STRIPE_SECRET_KEY'],
  catalogue: CATALOGUE,
  // An update can raise the amount a later confirm moves.
  sensitiveEndpoints: [parseEndpointPattern('POST /v1/payment_intents/*')],

  readVaultKey(headers) {
    // The SDK sends Bearer; `curl -u key:` sends Basic with the key as username.
    return readBearer(headers) ?? readBasic(headers)?.[0];
  },

  prepareUpstream(request, secrets) {
    return { segments: request.segments, headers: { authorization: `Bearer ${secrets.STRIPE_SECRET_KEY}` } };
  },

  vendorRequestId(response) {
    const id = response.headers['request-id'];
    return typeof id === 'string' ? id : undefined;
  },
};
