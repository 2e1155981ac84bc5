import { parseEndpointPattern, matchesRoute } from '../allowlist.js';
import { RequestNotPriceableError } from '../errors.js';
import { usdToMicros } from '../money.js';
import { type VendorModule, type VendorRequest, isSuccess, readBearer, readJson, readParams } from './vendor.js';

const SEND = parseEndpointPattern('POST /emails');
const BATCH = parseEndpointPattern('POST /emails/batch');

function isCosted(request: VendorRequest): boolean {
  return [SEND, BATCH].some((pattern) => matchesRoute(pattern, request.method, request.segments));
}

/** How many emails a send request asks for: 1, or the length of a batch. */
function emailCount(request: VendorRequest): number | undefined {
  if (matchesRoute(SEND, request.method, request.segments)) return 1;
  if (!matchesRoute(BATCH, request.method, request.segments)) return undefined;
  // Read strictly (a BOM stripped, gzip or another media type refused): an unreadable batch
  // reserved at $0 was forwarded to a vendor that may read it. Regression: issue 16.
  const params = readParams(request);
  if (params.bodyKind !== 'json' || !Array.isArray(params.json)) {
    throw new RequestNotPriceableError('A Resend batch must be a JSON array of emails.');
  }
  return params.json.length;
}

/** Resend: Bearer API key; cost = a configured price per email. */
export const resend: VendorModule = {
  name: 'resend',
  defaultBaseUrl: 'https://api.resend.com',
  secretNames: ['RESEND_API_KEY'],
  costedEndpoints: [SEND, BATCH],

  readVaultKey: readBearer,

  prepareUpstream(request, secrets) {
    return { segments: request.segments, headers: { authorization: `Bearer ${secrets.RESEND_API_KEY}` } };
  },

  estimateCost(request, pricing) {
    const count = emailCount(request);
    return count === undefined ? undefined : usdToMicros(count * pricing.resendEmailUsd);
  },

  settleCost(request, response, estimate) {
    return isSuccess(response.status) && isCosted(request) ? estimate : 0;
  },

  vendorRequestId(response) {
    const body = readJson(response.body) as { id?: unknown } | undefined;
    return typeof body?.id === 'string' ? body.id : undefined;
  },
};
