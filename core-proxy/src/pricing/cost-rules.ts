import { type EndpointPattern, matchesRoute, parseEndpointPattern } from '../keys/allowlist.js';
import { InvalidRequestError } from '../errors.js';
import { type Micros, usdToMicros } from './money.js';
import { VendorOptionValues } from '../vendors/vendor-options.js';

/** Prices and rates the vendor modules use to estimate and settle costs. */
export interface PricingOptions {
  /**
   * USD per major unit of each non-USD currency, lower-case ISO codes (Stripe amounts, Twilio
   * `price_unit`). A Map, never an object: `__proto__` or `constructor` must not find a rate.
   * @default empty (only USD)
   */
  readonly fxRates: ReadonlyMap<string, number>;
  /**
   * Each vendor's own knobs (Twilio's SMS prices, Resend's price per email...), read by the
   * vendor's `options` spec; a module reads its own with `vendorOptions.get(spec)`.
   * @default every vendor's defaults
   */
  readonly vendorOptions: VendorOptionValues;
  /**
   * A call on a tracked object the key's family has not seen (a Stripe PaymentIntent created
   * elsewhere) GETs the object with the real secret to price it, instead of being refused. @default false
   */
  readonly readBeforeWrite: boolean;
  /** Flat costs for endpoints that have no built-in rule, per vendor. @default {} */
  readonly extraCostRules: Readonly<Record<string, readonly CostRule[]>>;
  /**
   * Endpoints refused to tainted requests besides those with a cost rule (built-in or configured),
   * per vendor. @default {}
   */
  readonly extraSensitiveEndpoints: Readonly<Record<string, readonly EndpointPattern[]>>;
}

/** A configured flat cost for one endpoint pattern. */
export interface CostRule {
  readonly pattern: EndpointPattern;
  readonly micros: Micros;
}

/** Pricing with nothing configured. */
export const DEFAULT_PRICING: PricingOptions = {
  fxRates: new Map(),
  vendorOptions: VendorOptionValues.DEFAULTS,
  readBeforeWrite: false,
  extraCostRules: {},
  extraSensitiveEndpoints: {},
};

/** The USD rate of a currency, or `undefined`: an own entry of the map only (never `__proto__`). */
export function usdRate(pricing: PricingOptions, currency: string): number | undefined {
  const code = currency.toLowerCase();
  if (code === 'usd') return 1;
  return /^[a-z]{3}$/.test(code) ? pricing.fxRates.get(code) : undefined;
}

/**
 * Parses `KEYBRAKE_COST_RULES`: JSON `{"stripe": {"POST /v1/refunds": 0, "POST /v1/invoices/*\/pay": 50}}`
 * giving a flat USD cost per endpoint that has no built-in rule.
 */
export function parseCostRules(json: string): Record<string, CostRule[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new InvalidRequestError('KEYBRAKE_COST_RULES must be JSON.');
  }
  if (!parsed || typeof parsed !== 'object') throw new InvalidRequestError('KEYBRAKE_COST_RULES must be an object.');
  const rules: Record<string, CostRule[]> = {};
  for (const [vendor, entries] of Object.entries(parsed)) {
    rules[vendor] = Object.entries(entries as Record<string, unknown>).map(([endpoint, usd]) => {
      if (typeof usd !== 'number' || !(usd >= 0)) {
        throw new InvalidRequestError(`KEYBRAKE_COST_RULES: cost of "${endpoint}" must be a number >= 0.`);
      }
      return { pattern: parseEndpointPattern(endpoint), micros: usdToMicros(usd) };
    });
  }
  return rules;
}

/** Parses `KEYBRAKE_FX_RATES`: `eur=1.08,gbp=1.27` (USD per major unit). */
export function parseFxRates(text: string): Map<string, number> {
  const rates = new Map<string, number>();
  for (const pair of text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)) {
    const [currency, rate] = pair.split('=');
    const value = Number(rate);
    if (!currency || !/^[a-z]{3}$/i.test(currency) || !(value > 0) || !Number.isFinite(value)) {
      throw new InvalidRequestError(`KEYBRAKE_FX_RATES: "${pair}" must look like eur=1.08.`);
    }
    rates.set(currency.toLowerCase(), value);
  }
  return rates;
}

/** The configured flat cost of an endpoint with no built-in rule, or `undefined`. */
export function extraCost(
  pricing: PricingOptions,
  vendor: string,
  method: string,
  segments: readonly string[],
): Micros | undefined {
  return pricing.extraCostRules[vendor]?.find((rule) => matchesRoute(rule.pattern, method, segments))?.micros;
}

/** Parses `KEYBRAKE_SENSITIVE_ENDPOINTS`: JSON `{"stripe": ["POST /v1/refunds"]}`. */
export function parseSensitiveEndpoints(json: string): Record<string, EndpointPattern[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new InvalidRequestError('KEYBRAKE_SENSITIVE_ENDPOINTS must be JSON.');
  }
  if (!parsed || typeof parsed !== 'object') {
    throw new InvalidRequestError('KEYBRAKE_SENSITIVE_ENDPOINTS must be an object.');
  }
  const endpoints: Record<string, EndpointPattern[]> = {};
  for (const [vendor, entries] of Object.entries(parsed)) {
    if (!Array.isArray(entries) || entries.some((entry) => typeof entry !== 'string')) {
      throw new InvalidRequestError(`KEYBRAKE_SENSITIVE_ENDPOINTS.${vendor} must be an array of "METHOD /path".`);
    }
    endpoints[vendor] = (entries as string[]).map(parseEndpointPattern);
  }
  return endpoints;
}

/**
 * Whether an endpoint moves money, so tainted requests may not call it: it has a cost rule
 * (the vendor module's or a configured one) or is configured as sensitive.
 */
export function isSensitive(
  pricing: PricingOptions,
  vendor: string,
  builtIn: readonly EndpointPattern[],
  method: string,
  segments: readonly string[],
): boolean {
  const matches = (pattern: EndpointPattern): boolean => matchesRoute(pattern, method, segments);
  return (
    builtIn.some(matches) ||
    (pricing.extraCostRules[vendor] ?? []).some((rule) => matches(rule.pattern)) ||
    (pricing.extraSensitiveEndpoints[vendor] ?? []).some(matches)
  );
}
