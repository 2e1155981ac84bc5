import { InvalidRequestError } from '../errors.js';
import { type Env, optionalPositiveNumber, positiveNumber } from '../env.js';
import type { VendorOptionsSpec } from './vendor-options.js';

/** Twilio's prices, as the operator configures them (`KEYBRAKE_TWILIO_*`). */
export interface TwilioPricing {
  /** Upper-bound price of one SMS segment to `+1` (US and Canada, less the listed NANP islands). @default 0.0083 */
  readonly segmentUsd: number;
  /**
   * Upper-bound price of one SMS segment per E.164 prefix (`+44`), longest prefix first, `+1`
   * included (see {@link twilioSmsTable}). @default `+1` and TWILIO_SMS_PRICES
   */
  readonly smsPrices: readonly TwilioPrefixPrice[];
  /**
   * Price of one SMS segment to a destination no prefix lists, or `null` to refuse those
   * (`request_not_priceable`). @default 0.5 (above every price on Twilio's list we know of)
   */
  readonly unlistedSegmentUsd: number | null;
  /** Upper-bound price of one MMS message. @default 0.022 */
  readonly mmsUsd: number;
  /** Price of one message sent from a Content template (`ContentSid`), per template SID. @default {} */
  readonly contentUsd: ReadonlyMap<string, number>;
  /** Price of one message of any Content template not listed, or `null` to refuse them. @default null */
  readonly contentMaxUsd: number | null;
  /** Upper-bound price of one minute of an outbound call (`Calls.json`), or `null` to refuse calls. @default null */
  readonly callMinuteUsd: number | null;
}

/** A price per SMS segment for destinations whose E.164 number starts with `prefix` (`+44`). */
export interface TwilioPrefixPrice {
  readonly prefix: string;
  readonly usd: number;
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

const DEFAULT_SEGMENT_USD = 0.0083;
const DEFAULT_UNLISTED_SEGMENT_USD = 0.5;
const DEFAULT_MMS_USD = 0.022;

/** Twilio's knobs: `KEYBRAKE_TWILIO_*`. */
export const TWILIO_PRICING: VendorOptionsSpec<TwilioPricing> = {
  defaults: {
    segmentUsd: DEFAULT_SEGMENT_USD,
    smsPrices: twilioSmsTable([], DEFAULT_SEGMENT_USD),
    unlistedSegmentUsd: DEFAULT_UNLISTED_SEGMENT_USD,
    mmsUsd: DEFAULT_MMS_USD,
    contentUsd: new Map(),
    contentMaxUsd: null,
    callMinuteUsd: null,
  },

  read(env: Env): TwilioPricing {
    const segmentUsd = positiveNumber(env, 'KEYBRAKE_TWILIO_SEGMENT_USD', DEFAULT_SEGMENT_USD);
    return {
      segmentUsd,
      smsPrices: twilioSmsTable(
        env.KEYBRAKE_TWILIO_SMS_PRICES ? parseTwilioSmsPrices(env.KEYBRAKE_TWILIO_SMS_PRICES) : [],
        segmentUsd,
      ),
      unlistedSegmentUsd:
        env.KEYBRAKE_TWILIO_UNLISTED_SEGMENT_USD === 'refuse'
          ? null
          : positiveNumber(env, 'KEYBRAKE_TWILIO_UNLISTED_SEGMENT_USD', DEFAULT_UNLISTED_SEGMENT_USD),
      mmsUsd: positiveNumber(env, 'KEYBRAKE_TWILIO_MMS_USD', DEFAULT_MMS_USD),
      contentUsd: env.KEYBRAKE_TWILIO_CONTENT_USD
        ? parseTwilioContentPrices(env.KEYBRAKE_TWILIO_CONTENT_USD)
        : new Map(),
      contentMaxUsd: optionalPositiveNumber(env, 'KEYBRAKE_TWILIO_CONTENT_MAX_USD'),
      callMinuteUsd: optionalPositiveNumber(env, 'KEYBRAKE_TWILIO_CALL_MINUTE_USD'),
    };
  },

  environment: {
    KEYBRAKE_TWILIO_SEGMENT_USD: 'price of one SMS segment to +1 (default 0.0083)',
    KEYBRAKE_TWILIO_SMS_PRICES: 'JSON price per segment by E.164 prefix, over the defaults',
    KEYBRAKE_TWILIO_UNLISTED_SEGMENT_USD: "price per segment to an unlisted destination, or 'refuse' (default 0.5)",
    KEYBRAKE_TWILIO_MMS_USD: 'price of one MMS (default 0.022)',
    KEYBRAKE_TWILIO_CONTENT_USD: 'JSON price of one message per Content template SID',
    KEYBRAKE_TWILIO_CONTENT_MAX_USD: 'price of one message of any other Content template (default: refused)',
    KEYBRAKE_TWILIO_CALL_MINUTE_USD:
      'price of one call minute; a call is reserved for its TimeLimit (default: refused)',
  },
};
