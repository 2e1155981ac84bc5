import { matchesRoute, parseEndpointPattern } from '../keys/allowlist.js';
import {
  CurrencyNotSupportedError,
  EndpointNotAllowedError,
  InvalidRequestError,
  RequestNotPriceableError,
} from '../errors.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import { type PricingOptions, usdRate } from '../pricing/cost-rules.js';
import type { VendorObjectState } from '../store/store.js';
import {
  type ObjectCall,
  type RequestParams,
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  moneyMoving,
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

/** Converts a Stripe amount in the currency's minor units to micro-dollars, rounding up. */
export function stripeAmountToMicros(amount: number, currency: string, pricing: PricingOptions): Micros {
  const code = currency.toLowerCase();
  // Regression: issue 17. `currency=__proto__` found Object.prototype as its "rate" (503, no audit).
  const rate = usdRate(pricing, code);
  if (rate === undefined) {
    throw new CurrencyNotSupportedError(code);
  }
  const decimals = ZERO_DECIMAL.has(code) ? 0 : THREE_DECIMAL.has(code) ? 3 : 2;
  return usdToMicros((amount / 10 ** decimals) * rate);
}

/** The one value of a parameter the call is priced from (the reader refuses repeats and other spellings). */
function required(value: string | number | undefined, name: string): string | number {
  if (value === undefined || value === '') {
    throw new RequestNotPriceableError(`The parameter "${name}" is required to price this call.`);
  }
  return value;
}

/** Prices a call that names its own `amount` and `currency` (charges, transfers, payouts, topups). */
function requestAmount(request: VendorRequest, pricing: PricingOptions): Micros {
  const params = readParams(request);
  const amount = required(params.integer('amount'), 'amount') as number;
  // No default currency: an account's own may be worth more than USD.
  const currency = required(params.one('currency'), 'currency') as string;
  return stripeAmountToMicros(amount, currency.trim(), pricing);
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

/** The amount and currency of a PaymentIntent or charge in a vendor answer. */
function answeredObject(
  response: VendorResponse,
): { id: string; amount: number; currency: string; received?: number } | undefined {
  const body = readJson(response.body) as Record<string, unknown> | undefined;
  const { id, amount, currency } = body ?? {};
  if (typeof id !== 'string' || typeof currency !== 'string' || typeof amount !== 'number') return undefined;
  if (!Number.isSafeInteger(amount) || amount < 0) return undefined;
  const received = typeof body?.amount_received === 'number' ? body.amount_received : undefined;
  return { id, amount, currency: currency.toLowerCase(), ...(received === undefined ? {} : { received }) };
}

const readIntent = {
  segments: (id: string) => ['v1', 'payment_intents', id],
  state: (response: VendorResponse) => {
    const object = answeredObject(response);
    return object && { amount: object.amount, currency: object.currency };
  },
};
const readCharge = { ...readIntent, segments: (id: string) => ['v1', 'charges', id] };
/** A refund names a PaymentIntent (`pi_...`) or a charge (`ch_...`, `py_...`). */
const readRefunded = {
  ...readIntent,
  segments: (id: string) => (id.startsWith('pi_') ? readIntent : readCharge).segments(id),
};

/**
 * A call that moves (part of) the object's own amount: it books what the object may move beyond
 * what is already booked for it (creating a PaymentIntent books its amount), so a payment is
 * counted once, at the most it ever was.
 */
function movesObjectAmount(
  pattern: string,
  objectSegment: number,
  ceiling: (params: RequestParams, state: VendorObjectState) => number,
  read = readIntent,
): ObjectCall {
  return {
    pattern: parseEndpointPattern(pattern),
    objectId: (request) => request.segments[objectSegment],
    needsState: true,
    estimate(request, state, pricing) {
      const tracked = state as VendorObjectState;
      const most = stripeAmountToMicros(ceiling(readParams(request), tracked), tracked.currency, pricing);
      return Math.max(0, most - tracked.bookedMicros);
    },
    settle(_request, response, state, pricing, estimate) {
      const tracked = state as VendorObjectState;
      const object = answeredObject(response);
      // An answer that does not show the object: book the reservation, and forget the state.
      if (!object) return { micros: estimate, state: null };
      const most = stripeAmountToMicros(Math.max(object.amount, object.received ?? 0), object.currency, pricing);
      const booked = Math.max(tracked.bookedMicros, most);
      return {
        micros: booked - tracked.bookedMicros,
        state: { amount: object.amount, currency: object.currency, bookedMicros: booked },
      };
    },
    unknown: (state, reserved) => state && { ...state, bookedMicros: state.bookedMicros + reserved },
    read,
  };
}

/** A refund of a tracked PaymentIntent or charge: its `amount`, or all of the object's amount. */
function refundOf(pattern: string, objectId: (request: VendorRequest) => string | undefined): ObjectCall {
  return {
    pattern: parseEndpointPattern(pattern),
    objectId,
    needsState: true,
    estimate(request, state, pricing) {
      const tracked = state as VendorObjectState;
      const amount = readParams(request).integer('amount') ?? tracked.amount;
      return stripeAmountToMicros(Math.max(amount, 0), tracked.currency, pricing);
    },
    settle: (request, response, _state, pricing, estimate) => ({
      micros: answeredAmount('amount')(request, response, estimate, pricing),
      state: undefined,
    }),
    unknown: () => undefined,
    read: readRefunded,
  };
}

/** The PaymentIntent or charge a refund names: `payment_intent` or `charge`. */
function refundedObject(request: VendorRequest): string | undefined {
  const params = readParams(request);
  const named = [...params.all('payment_intent'), ...params.all('charge')];
  return named.length === 1 ? named[0] : undefined;
}

/**
 * Calls priced from the PaymentIntent (or charge) they act on, tracked per key family from the
 * answers the proxy forwarded. Regression: issue 17.
 */
const OBJECT_CALLS: ObjectCall[] = [
  movesObjectAmount('POST /v1/payment_intents/*/confirm', 2, (_params, state) => state.amount),
  movesObjectAmount(
    'POST /v1/payment_intents/*/capture',
    2,
    (params, state) => params.integer('amount_to_capture') ?? state.amount,
  ),
  movesObjectAmount('POST /v1/payment_intents/*/increment_authorization', 2, (params, state) =>
    Math.max(required(params.integer('amount'), 'amount') as number, state.amount),
  ),
  movesObjectAmount(
    'POST /v1/charges/*/capture',
    2,
    (params, state) => params.integer('amount') ?? state.amount,
    readCharge,
  ),
  refundOf('POST /v1/refunds', refundedObject),
  refundOf('POST /v1/charges/*/refunds', (request) => request.segments[2]),
  {
    // An update costs nothing, but may change the amount: it holds the claim, and its answer is tracked.
    pattern: parseEndpointPattern('POST /v1/payment_intents/*'),
    objectId: (request) => request.segments[2],
    needsState: false,
    estimate: () => 0,
    settle(_request, response, state) {
      const object = answeredObject(response);
      return {
        micros: 0,
        state: object
          ? { amount: object.amount, currency: object.currency, bookedMicros: state?.bookedMicros ?? 0 }
          : null,
      };
    },
    // The amount may have changed: forget it, so a later confirm is priced only from a fresh state.
    unknown: () => null,
    read: readIntent,
  },
];

/** Stripe: Bearer secret key; money-moving calls priced from their amount (see the catalogue). */
export const stripe: VendorModule = {
  name: 'stripe',
  defaultBaseUrl: 'https://api.stripe.com',
  secretNames: ['STRIPE_SECRET_KEY'],
  // stripe-mock accepts only test-mode keys.
  testSecretPrefixes: { STRIPE_SECRET_KEY: 'sk_test_' },
  catalogue: CATALOGUE,
  // An update can raise the amount a later confirm moves.
  sensitiveEndpoints: [parseEndpointPattern('POST /v1/payment_intents/*')],

  readVaultKey(headers) {
    // The SDK sends Bearer; `curl -u key:` sends Basic with the key as username.
    return readBearer(headers) ?? readBasic(headers)?.[0];
  },

  checkHeaders(request) {
    // Regression: issue 16. `Stripe-Account` acts on any connected account of the platform: a
    // vault key is scoped to the proxy's own account, so a key could otherwise reach them all.
    for (const name of ACCOUNT_HEADERS) {
      if (request.headers[name] !== undefined) {
        throw new EndpointNotAllowedError(
          request.method,
          `/${request.segments.join('/')}`,
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

  vendorRequestId(response) {
    const id = response.headers['request-id'];
    return typeof id === 'string' ? id : undefined;
  },

  objectCalls: OBJECT_CALLS,

  observeObjects(request, response, bookedMicros) {
    const created = CREATES_OBJECTS.some((pattern) => matchesRoute(pattern, request.method, request.segments));
    const object = created ? answeredObject(response) : undefined;
    return object
      ? [{ objectId: object.id, state: { amount: object.amount, currency: object.currency, bookedMicros } }]
      : [];
  },
};

/** Creating these books their amount; the later calls on them are priced from it. */
const CREATES_OBJECTS = [parseEndpointPattern('POST /v1/payment_intents'), parseEndpointPattern('POST /v1/charges')];
