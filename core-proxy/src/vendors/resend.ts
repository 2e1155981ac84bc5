import { RequestNotPriceableError } from '../errors.js';
import { type Micros, usdToMicros } from '../pricing/money.js';
import type { PricingOptions } from '../pricing/cost-rules.js';
import { type Env, positiveNumber } from '../env.js';
import type { VendorOptionsSpec } from './vendor-options.js';
import { type VendorModule, type VendorRequest, moneyMoving, readBearer, readJson, readParams } from './vendor.js';

/**
 * How many recipients one address field names, at most. Resend takes a string or an array of
 * strings; a string may list several addresses, so it counts as its comma-separated parts (an
 * upper bound: a quoted display name with a comma counts twice).
 */
function countAddresses(field: unknown, name: string): number {
  if (field === undefined || field === null) return 0;
  const entries = Array.isArray(field) ? field : [field];
  let count = 0;
  for (const entry of entries) {
    if (typeof entry !== 'string') throw new RequestNotPriceableError(`Resend: \`${name}\` must be strings.`);
    count += entry.split(',').filter((part) => part.trim() !== '').length;
  }
  return count;
}

/** Resend bills every recipient as one email: to + cc + bcc. Regression: issue 17. */
function recipients(email: unknown): number {
  if (!email || typeof email !== 'object' || Array.isArray(email)) {
    throw new RequestNotPriceableError('Resend: an email must be a JSON object.');
  }
  const fields = email as Record<string, unknown>;
  const count = countAddresses(fields.to, 'to') + countAddresses(fields.cc, 'cc') + countAddresses(fields.bcc, 'bcc');
  // Resend refuses an email with no recipient; it is still reserved as one.
  return Math.max(1, count);
}

/** The JSON body, read strictly (a BOM stripped; gzip, another media type, a repeated key refused). */
function emailBody(request: VendorRequest): unknown {
  const params = readParams(request);
  if (params.bodyKind !== 'json') throw new RequestNotPriceableError('Resend: the body must be JSON.');
  return params.json;
}

function estimateEmail(request: VendorRequest, pricing: PricingOptions): Micros {
  return usdToMicros(recipients(emailBody(request)) * pricing.vendorOptions.get(RESEND_PRICING).emailUsd);
}

function estimateBatch(request: VendorRequest, pricing: PricingOptions): Micros {
  const body = emailBody(request);
  if (!Array.isArray(body)) throw new RequestNotPriceableError('Resend: a batch must be a JSON array of emails.');
  const total = body.reduce((sum: number, email) => sum + recipients(email), 0);
  return usdToMicros(total * pricing.vendorOptions.get(RESEND_PRICING).emailUsd);
}

/** Resend's prices, as the operator configures them (`KEYBRAKE_RESEND_*`). */
export interface ResendPricing {
  /** Price of one email, charged per recipient (to + cc + bcc). @default 0.0009 */
  readonly emailUsd: number;
}

const DEFAULT_EMAIL_USD = 0.0009;

/** Resend's knobs: `KEYBRAKE_RESEND_EMAIL_USD`. */
export const RESEND_PRICING: VendorOptionsSpec<ResendPricing> = {
  defaults: { emailUsd: DEFAULT_EMAIL_USD },
  read: (env: Env) => ({ emailUsd: positiveNumber(env, 'KEYBRAKE_RESEND_EMAIL_USD', DEFAULT_EMAIL_USD) }),
  environment: { KEYBRAKE_RESEND_EMAIL_USD: 'price of one email per recipient (default 0.0009)' },
};

/** Every Resend endpoint that moves money. Regression: issue 17. */
const CATALOGUE = [
  moneyMoving('POST /emails', 'an email per recipient (to, cc, bcc)', { estimate: estimateEmail }),
  moneyMoving('POST /emails/batch', 'an email per recipient of every email in the batch', {
    estimate: estimateBatch,
  }),
  // The audience's size is not in the request.
  moneyMoving('POST /broadcasts/*/send', 'an email per contact of the audience'),
];

/** Resend: Bearer API key; cost = a configured price per recipient. */
export const resend: VendorModule = {
  name: 'resend',
  defaultBaseUrl: 'https://api.resend.com',
  secretNames: ['RESEND_API_KEY'],
  testSecretPrefixes: { RESEND_API_KEY: 're_' },
  options: RESEND_PRICING,
  catalogue: CATALOGUE,
  sensitiveEndpoints: [],

  readVaultKey: readBearer,

  prepareUpstream(request, secrets) {
    return { segments: request.segments, headers: { authorization: `Bearer ${secrets.RESEND_API_KEY}` } };
  },

  vendorRequestId(response) {
    const body = readJson(response.body) as { id?: unknown } | undefined;
    return typeof body?.id === 'string' ? body.id : undefined;
  },
};
