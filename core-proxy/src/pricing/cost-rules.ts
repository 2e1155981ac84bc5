import { type EndpointPattern, matchesRoute, parseEndpointPattern } from '../keys/allowlist.js';
import { InvalidRequestError } from '../errors.js';
import { type Micros, usdToMicros } from './money.js';

/** Prices and rates the vendor modules use to estimate and settle costs. */
export interface PricingOptions {
  /**
   * USD per major unit of each non-USD currency, lower-case ISO codes (Stripe amounts, Twilio
   * `price_unit`). A Map, never an object: `__proto__` or `constructor` must not find a rate.
   * @default empty (only USD)
   */
  readonly fxRates: ReadonlyMap<string, number>;
  /** Upper-bound price of one SMS segment to `+1` (US and Canada, less the listed NANP islands). @default 0.0083 */
  readonly twilioSegmentUsd: number;
  /**
   * Upper-bound price of one SMS segment per E.164 prefix (`+44`), longest prefix first, `+1`
   * included (see {@link twilioSmsTable}). @default `+1` and TWILIO_SMS_PRICES
   */
  readonly twilioSmsPrices: readonly TwilioPrefixPrice[];
  /**
   * Price of one SMS segment to a destination no prefix lists, or `null` to refuse those
   * (`request_not_priceable`). @default 0.5 (above every price on Twilio's list we know of)
   */
  readonly twilioUnlistedSegmentUsd: number | null;
  /** Upper-bound price of one MMS message. @default 0.022 */
  readonly twilioMmsUsd: number;
  /** Price of one message sent from a Content template (`ContentSid`), per template SID. @default {} */
  readonly twilioContentUsd: ReadonlyMap<string, number>;
  /** Price of one message of any Content template not listed, or `null` to refuse them. @default null */
  readonly twilioContentMaxUsd: number | null;
  /** Upper-bound price of one minute of an outbound call (`Calls.json`), or `null` to refuse calls. @default null */
  readonly twilioCallMinuteUsd: number | null;
  /** Price of one email sent through Resend, charged per recipient (to + cc + bcc). @default 0.0009 */
  readonly resendEmailUsd: number;
  /**
   * A Stripe call on an object the key's family has not seen (a PaymentIntent created elsewhere)
   * GETs the object with the real secret to price it, instead of being refused. @default false
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

/** A price per SMS segment for destinations whose E.164 number starts with `prefix` (`+44`). */
export interface TwilioPrefixPrice {
  readonly prefix: string;
  readonly usd: number;
}

/** A configured flat cost for one endpoint pattern. */
export interface CostRule {
  readonly pattern: EndpointPattern;
  readonly micros: Micros;
}

/**
 * Per-segment SMS prices from Twilio's published price list (outbound, USD, at the time of
 * writing; carrier fees, which Twilio bills as separate lines, excluded). Prices change and vary
 * by carrier: an operator who texts other countries lists them in `KEYBRAKE_TWILIO_SMS_PRICES`.
 * `+1` itself comes from `KEYBRAKE_TWILIO_SEGMENT_USD`.
 */
export const TWILIO_SMS_PRICES: readonly TwilioPrefixPrice[] = [
  { prefix: '+44', usd: 0.0524 }, // United Kingdom
  { prefix: '+1787', usd: 0.042 }, // Puerto Rico
  { prefix: '+1939', usd: 0.042 }, // Puerto Rico
  { prefix: '+1868', usd: 0.2992 }, // Trinidad and Tobago
  { prefix: '+977', usd: 0.3022 }, // Nepal
  { prefix: '+382', usd: 0.1375 }, // Montenegro
  { prefix: '+244', usd: 0.1789 }, // Angola
  { prefix: '+230', usd: 0.1896 }, // Mauritius
  { prefix: '+597', usd: 0.235 }, // Suriname
];

export const DEFAULT_PRICING: PricingOptions = {
  fxRates: new Map(),
  twilioSegmentUsd: 0.0083,
  twilioSmsPrices: twilioSmsTable([], 0.0083),
  twilioUnlistedSegmentUsd: 0.5,
  twilioMmsUsd: 0.022,
  twilioContentUsd: new Map(),
  twilioContentMaxUsd: null,
  twilioCallMinuteUsd: null,
  resendEmailUsd: 0.0009,
  readBeforeWrite: false,
  extraCostRules: {},
  extraSensitiveEndpoints: {},
};

/**
 * The SMS price table in force: `+1` at the configured segment price, the defaults, then the
 * configured prefixes over both. Longest prefix first, so the most specific entry wins.
 */
export function twilioSmsTable(configured: readonly TwilioPrefixPrice[], segmentUsd: number): TwilioPrefixPrice[] {
  const table = new Map<string, number>([['+1', segmentUsd]]);
  for (const entry of [...TWILIO_SMS_PRICES, ...configured]) table.set(entry.prefix, entry.usd);
  return [...table].map(([prefix, usd]) => ({ prefix, usd })).sort((x, y) => y.prefix.length - x.prefix.length);
}

/** Parses `KEYBRAKE_TWILIO_SMS_PRICES`: JSON `{"+44": 0.0524, "+49": 0.0887}` (USD per segment). */
export function parseTwilioSmsPrices(json: string): TwilioPrefixPrice[] {
  const entries = parseJsonObject(json, 'KEYBRAKE_TWILIO_SMS_PRICES');
  return Object.entries(entries).map(([prefix, usd]) => {
    if (!/^\+[0-9]{1,7}$/.test(prefix)) {
      throw new InvalidRequestError(`KEYBRAKE_TWILIO_SMS_PRICES: "${prefix}" must be an E.164 prefix such as "+44".`);
    }
    if (typeof usd !== 'number' || !(usd > 0) || !Number.isFinite(usd)) {
      throw new InvalidRequestError(`KEYBRAKE_TWILIO_SMS_PRICES: the price of "${prefix}" must be a number > 0.`);
    }
    return { prefix, usd };
  });
}

/** Parses `KEYBRAKE_TWILIO_CONTENT_USD`: JSON `{"HX...": 0.05}` (USD per message of that template). */
export function parseTwilioContentPrices(json: string): Map<string, number> {
  const prices = new Map<string, number>();
  for (const [sid, usd] of Object.entries(parseJsonObject(json, 'KEYBRAKE_TWILIO_CONTENT_USD'))) {
    if (!/^HX[0-9a-fA-F]{32}$/.test(sid)) {
      throw new InvalidRequestError(`KEYBRAKE_TWILIO_CONTENT_USD: "${sid}" is not a Content SID (HX + 32 hex digits).`);
    }
    if (typeof usd !== 'number' || !(usd > 0) || !Number.isFinite(usd)) {
      throw new InvalidRequestError(`KEYBRAKE_TWILIO_CONTENT_USD: the price of "${sid}" must be a number > 0.`);
    }
    prices.set(sid, usd);
  }
  return prices;
}

function parseJsonObject(json: string, name: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    throw new InvalidRequestError(`${name} must be JSON.`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new InvalidRequestError(`${name} must be a JSON object.`);
  }
  return parsed as Record<string, unknown>;
}

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
