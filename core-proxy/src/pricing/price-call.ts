import { type PricingOptions, extraCost } from './cost-rules.js';
import { RequestNotPriceableError } from '../errors.js';
import type { Micros } from './money.js';
import {
  type MoneyMovingEndpoint,
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  findMoneyMoving,
  isSuccess,
} from '../vendors/vendor.js';

/** What a call is reserved at, and why. */
export interface CallPrice {
  /** The reservation: the most the call can cost. */
  readonly micros: Micros;
  /** The catalogue entry, when the endpoint moves money. */
  readonly entry: MoneyMovingEndpoint | undefined;
  /**
   * `built_in`: priced by the vendor module; `rule`: a configured flat cost; `free`: neither
   * catalogued nor configured.
   */
  readonly source: 'built_in' | 'rule' | 'free';
  /** How a 2xx answer is settled, when not by the catalogue entry (a call on a tracked object). */
  readonly settleAnswer?: (request: VendorRequest, response: VendorResponse, pricing: PricingOptions) => Micros;
}

/** What settlement books for a call the vendor answered. */
export interface CallSettlement {
  readonly micros: Micros;
  /** The vendor may or may not have acted (a 5xx): booked as unknown spend. */
  readonly unknown: boolean;
}

/**
 * Prices a call before it is reserved: the vendor module's built-in price for a catalogued
 * endpoint, else the operator's flat rule, else, for a catalogued endpoint, a refusal; an
 * endpoint that moves no money and has no rule is free.
 * @throws RequestNotPriceableError, or the vendor module's own refusal (`currency_not_supported`).
 */
export function priceCall(vendor: VendorModule, request: VendorRequest, pricing: PricingOptions): CallPrice {
  const entry = findMoneyMoving(vendor, request.method, request.segments);
  if (entry?.estimate) return { micros: bounded(entry.estimate(request, pricing)), entry, source: 'built_in' };
  const rule = extraCost(pricing, vendor.name, request.method, request.segments);
  if (rule !== undefined) return { micros: rule, entry, source: 'rule' };
  if (entry) {
    // Regression: issue 17. A money-moving endpoint with no price was forwarded at $0.
    throw new RequestNotPriceableError(
      `${request.method} /${request.segments.join('/')} moves money (${entry.moves}) and has no cost rule: ` +
        'set one in KEYBRAKE_COST_RULES to allow it.',
    );
  }
  return { micros: 0, entry, source: 'free' };
}

/** A reservation must be a whole, finite, non-negative number of micro-dollars. */
function bounded(micros: Micros): Micros {
  if (!Number.isSafeInteger(micros) || micros < 0) {
    throw new RequestNotPriceableError('The cost of this call cannot be bounded.');
  }
  return micros;
}

/**
 * What a call the vendor answered costs. A 2xx books what the vendor billed (the module's reading
 * of the answer, even above the reservation); a 5xx on a priced call is an unknown outcome (the
 * vendor may have acted before failing: Stripe documents 5xx results as indeterminate), so the
 * reservation stays as unknown spend; any other answer is a refusal and costs nothing.
 */
export function settleCall(
  price: CallPrice,
  request: VendorRequest,
  response: VendorResponse,
  pricing: PricingOptions,
): CallSettlement {
  // Regression: issue 17 (20 charges answered 500 after charging settled at $0).
  if (response.status >= 500 && (price.micros > 0 || price.entry !== undefined)) {
    return { micros: price.micros, unknown: true };
  }
  if (!isSuccess(response.status)) return { micros: 0, unknown: false };
  if (price.settleAnswer) return { micros: price.settleAnswer(request, response, pricing), unknown: false };
  const settle = price.source === 'free' ? undefined : price.entry?.settle;
  return { micros: settle ? settle(request, response, price.micros, pricing) : price.micros, unknown: false };
}
