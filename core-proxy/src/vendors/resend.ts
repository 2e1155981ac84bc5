import { parseEndpointPattern, matchesPattern } from '../allowlist.js';
import { usdToMicros } from '../money.js';
import { type VendorModule, type VendorRequest, isSuccess, readBearer, readJson } from './vendor.js';

const SEND = parseEndpointPattern('POST /emails');
const BATCH = parseEndpointPattern('POST /emails/batch');

/** How many emails a send request asks for: 1, or the length of a batch. */
function emailCount(request: VendorRequest): number | undefined {
  if (matchesPattern(SEND, request.method, request.segments)) return 1;
  if (!matchesPattern(BATCH, request.method, request.segments)) return undefined;
  const body = readJson(request.body);
  // Resend caps a batch at 100; an unreadable batch is refused by Resend, so it costs nothing.
  return Array.isArray(body) ? body.length : 0;
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
    return isSuccess(response.status) && emailCount(request) !== undefined ? estimate : 0;
  },

  vendorRequestId(response) {
    const body = readJson(response.body) as { id?: unknown } | undefined;
    return typeof body?.id === 'string' ? body.id : undefined;
  },
};
