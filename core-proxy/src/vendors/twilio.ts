import { type PricingOptions, usdRate } from '../pricing/cost-rules.js';
import { TWILIO_PRICING, type TwilioPricing } from './twilio-pricing.js';
import { RequestNotPriceableError } from '../errors.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import { VAULT_KEY_PREFIX } from '../keys/vault-keys.js';
import { smsSegments } from './twilio-segments.js';
import {
  type VendorModule,
  type VendorRequest,
  type VendorResponse,
  type RequestParams,
  moneyMoving,
  readBasic,
  readJson,
  readParams,
} from './vendor.js';

export { smsEncoding, smsSegments } from './twilio-segments.js';
export { TWILIO_PRICING, type TwilioPricing, type TwilioPrefixPrice } from './twilio-pricing.js';

/**
 * NANP area codes outside the US and Canada: `+1` numbers Twilio prices as other countries, so
 * they are never reserved at the `+1` price unless a longer prefix lists them.
 */
const NANP_ELSEWHERE = new Set([
  '242', '246', '264', '268', '284', '340', '345', '441', '473', '649', '658', '664', '670', '671', '684',
  '721', '758', '767', '784', '787', '809', '829', '849', '868', '869', '876', '939',
]); // prettier-ignore

/** Twilio's default and maximum `TimeLimit` of a call: 4 hours. */
const DEFAULT_CALL_SECONDS = 14_400;

/** The per-segment SMS price of a destination, or a refusal when it is not listed and unlisted ones are refused. */
function segmentPrice(to: string, prices: TwilioPricing): number {
  // A channel address (`whatsapp:+44...`) is billed by that channel: not the country's SMS price.
  const channel = /^[a-z-]+:(\+[0-9]{6,15})$/i.exec(to);
  const number = channel ? undefined : /^\+[0-9]{6,15}$/.test(to) ? to : undefined;
  if (!channel && !number) {
    throw new RequestNotPriceableError('Twilio: `To` must be one E.164 number (+ and digits) to price this message.');
  }
  const listed = number && prices.smsPrices.find((entry) => number.startsWith(entry.prefix));
  const island = listed && listed.prefix === '+1' && NANP_ELSEWHERE.has(number.slice(2, 5));
  if (listed && !island) return listed.usd;
  if (prices.unlistedSegmentUsd === null) {
    throw new RequestNotPriceableError(
      'Twilio: this destination has no price in KEYBRAKE_TWILIO_SMS_PRICES, and unlisted destinations are refused.',
    );
  }
  return prices.unlistedSegmentUsd;
}

/** The one `To` of a message or call. */
function destination(params: RequestParams): string {
  const to = params.one('To')?.trim();
  if (!to) throw new RequestNotPriceableError('Twilio: `To` is required to price this call.');
  return to;
}

/** The most one message can cost: a template's configured price, an MMS, or its segments at the destination's price. */
function estimateMessage(request: VendorRequest, pricing: PricingOptions): Micros {
  const prices = pricing.vendorOptions.get(TWILIO_PRICING);
  const params = readParams(request);
  const contentSids = [...new Set(params.all('ContentSid'))];
  if (contentSids.length > 0) {
    // Regression: issue 17. A template's length is not in the request: only a configured price bounds it.
    const templatePrices = contentSids.map((sid) => prices.contentUsd.get(sid) ?? prices.contentMaxUsd);
    if (templatePrices.some((price) => price === null || price === undefined)) {
      throw new RequestNotPriceableError(
        'Twilio: a ContentSid message has no configured price (KEYBRAKE_TWILIO_CONTENT_USD or KEYBRAKE_TWILIO_CONTENT_MAX_USD).',
      );
    }
    return usdToMicros(Math.max(...(templatePrices as number[])));
  }
  const perSegment = segmentPrice(destination(params), prices);
  // One Body: two would leave which one Twilio sends (and how many segments it bills) ambiguous.
  const segments = smsSegments(params.one('Body') ?? '');
  const sms = segments * perSegment;
  const mms =
    params.all('MediaUrl').length > 0 || params.all('SendAsMms').some((value) => value.trim().toLowerCase() === 'true');
  // An MMS Twilio cannot deliver as one is sent as SMS: either may be billed.
  return usdToMicros(mms ? Math.max(prices.mmsUsd, sms) : sms);
}

/** Twilio's `price` (negative, in `price_unit`) in USD, or `undefined` when it is not known. */
function answeredPrice(response: VendorResponse, pricing: PricingOptions): Micros | undefined {
  const body = readJson(response.body) as { price?: unknown; price_unit?: unknown } | undefined;
  const price = typeof body?.price === 'string' || typeof body?.price === 'number' ? Math.abs(Number(body.price)) : NaN;
  if (!Number.isFinite(price)) return undefined;
  // Regression: issue 17. `price_unit` "usd" or "EUR" was ignored and the estimate booked.
  const unit = typeof body?.price_unit === 'string' ? body.price_unit.trim() : 'USD';
  const rate = usdRate(pricing, unit);
  return rate === undefined ? undefined : usdToMicros(price * rate);
}

/**
 * What Twilio billed for a message: its `price` converted to USD when it is known. Twilio usually
 * answers `price: null` at create and prices the message later: the reservation, an upper bound,
 * stays booked, or the segments Twilio reports at the destination's price if that is more.
 */
function settleMessage(
  request: VendorRequest,
  response: VendorResponse,
  estimate: Micros,
  pricing: PricingOptions,
): Micros {
  const price = answeredPrice(response, pricing);
  if (price !== undefined) return price;
  const segments = Number((readJson(response.body) as { num_segments?: unknown } | undefined)?.num_segments);
  if (!Number.isInteger(segments) || segments <= 0) return estimate;
  try {
    return Math.max(
      estimate,
      usdToMicros(segments * segmentPrice(destination(readParams(request)), pricing.vendorOptions.get(TWILIO_PRICING))),
    );
  } catch {
    return estimate;
  }
}

/** What Twilio billed for a call: its `price` once known, else the reservation (its `TimeLimit`). */
function settleCall(
  _request: VendorRequest,
  response: VendorResponse,
  estimate: Micros,
  pricing: PricingOptions,
): Micros {
  return answeredPrice(response, pricing) ?? estimate;
}

/** The most a call can cost: its `TimeLimit` (Twilio's default: 4 hours) at the configured price per minute. */
function estimateCall(request: VendorRequest, pricing: PricingOptions): Micros {
  const minuteUsd = pricing.vendorOptions.get(TWILIO_PRICING).callMinuteUsd;
  if (minuteUsd === null) {
    throw new RequestNotPriceableError(
      'Twilio: calls are billed per minute; set KEYBRAKE_TWILIO_CALL_MINUTE_USD to allow them.',
    );
  }
  const params = readParams(request);
  destination(params);
  const seconds = params.integer('TimeLimit') ?? DEFAULT_CALL_SECONDS;
  return usdToMicros(Math.max(1, Math.ceil(seconds / 60)) * minuteUsd);
}

/** Every Twilio endpoint that moves money. Regression: issue 17. */
const CATALOGUE = [
  moneyMoving('POST /2010-04-01/Accounts/*/Messages.json', 'an SMS, MMS or template message', {
    estimate: estimateMessage,
    settle: settleMessage,
  }),
  moneyMoving('POST /2010-04-01/Accounts/*/Calls.json', 'an outbound call, billed per minute', {
    estimate: estimateCall,
    settle: settleCall,
  }),
  moneyMoving('POST /2010-04-01/Accounts/*/Conferences/*/Participants.json', 'an outbound call into a conference'),
  moneyMoving('POST /2010-04-01/Accounts/*/IncomingPhoneNumbers.json', 'a phone number, billed monthly'),
];

/** Index of the account SID segment in `/2010-04-01/Accounts/{Sid}/...`. */
function accountSegmentIndex(segments: readonly string[]): number {
  return segments[1] === 'Accounts' && segments.length > 2 ? 2 : -1;
}

/** Twilio: HTTP Basic (vault key as username or password); the account SID in the path is rewritten. */
export const twilio: VendorModule = {
  name: 'twilio',
  defaultBaseUrl: 'https://api.twilio.com',
  secretNames: ['TWILIO_ACCOUNT_SID', 'TWILIO_AUTH_TOKEN'],
  testSecretPrefixes: { TWILIO_ACCOUNT_SID: 'AC' },
  options: TWILIO_PRICING,
  catalogue: CATALOGUE,
  sensitiveEndpoints: [],

  readVaultKey(headers) {
    const credentials = readBasic(headers);
    if (!credentials) return undefined;
    const [username, password] = credentials;
    // The SDK insists on an `AC...` account SID as username, so the key usually rides as password.
    return username.startsWith(VAULT_KEY_PREFIX) ? username : password;
  },

  prepareUpstream(request, secrets) {
    const segments = [...request.segments];
    const index = accountSegmentIndex(segments);
    if (index >= 0) segments[index] = secrets.TWILIO_ACCOUNT_SID as string;
    const basic = Buffer.from(`${secrets.TWILIO_ACCOUNT_SID}:${secrets.TWILIO_AUTH_TOKEN}`).toString('base64');
    return { segments, headers: { authorization: `Basic ${basic}` } };
  },

  vendorRequestId(response) {
    const body = readJson(response.body) as { sid?: unknown } | undefined;
    return typeof body?.sid === 'string' ? body.sid : undefined;
  },

  maskResponseBody(request, body, secrets) {
    // Twilio echoes the account SID (`account_sid`, `uri`); give the client back the one it used.
    const realSid = secrets.TWILIO_ACCOUNT_SID as string;
    const index = accountSegmentIndex(request.segments);
    const clientSid = index >= 0 ? (request.segments[index] as string) : 'ACkeybrake';
    const text = body.toString('utf8');
    return text.includes(realSid) ? Buffer.from(text.split(realSid).join(clientSid)) : body;
  },
};
