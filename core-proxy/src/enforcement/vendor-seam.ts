/**
 * Everything the enforcement pipeline asks of vendors, in one place: which vendors are proxied,
 * their secrets and base URLs, which endpoints are sensitive, and their pricing. The pipeline
 * calls the vendor module's own methods (`readVaultKey`, `checkHeaders`, `prepareUpstream`,
 * `vendorRequestId`, `maskResponseBody`) directly; how vendors are found lives only here.
 */
import type { KeybrakeContext } from '../http/plugins/keybrake.js';
import type { EndpointPattern } from '../keys/allowlist.js';
import { isSensitive } from '../pricing/cost-rules.js';
import { type CallPrice, type CallSettlement, priceCall, settleCall } from '../pricing/price-call.js';
import type { VendorModule, VendorRequest, VendorResponse, VendorSecrets } from '../vendors/index.js';
import { type ObjectCall, findObjectCall } from '../vendors/vendor.js';

export type { VendorModule, VendorRequest, VendorResponse, VendorSecrets } from '../vendors/index.js';

/** Every vendor the proxy serves at `/{vendor}/*`. */
export function proxiedVendors(kb: KeybrakeContext): Iterable<VendorModule> {
  return kb.config.vendors;
}

/** The vendor's real secrets, or `undefined` when this proxy has none configured. */
export function vendorSecrets(kb: KeybrakeContext, vendor: VendorModule): VendorSecrets | undefined {
  return kb.config.vendorSecrets[vendor.name];
}

/** The vendor's upstream base URL, without a trailing slash. */
export function vendorBaseUrl(kb: KeybrakeContext, vendor: VendorModule): string {
  return kb.config.baseUrls[vendor.name] as string;
}

/** Whether a tainted request is refused here: the vendor's catalogue, its sensitive list, and cost rules. */
export function isSensitiveCall(
  kb: KeybrakeContext,
  vendor: VendorModule,
  method: string,
  segments: readonly string[],
): boolean {
  return isSensitive(kb.config.pricing, vendor.name, builtInSensitive(vendor), method, segments);
}

/** A vendor's own sensitive endpoints (its catalogue and its sensitive list), gathered once per vendor. */
const sensitiveByVendor = new WeakMap<VendorModule, readonly EndpointPattern[]>();

function builtInSensitive(vendor: VendorModule): readonly EndpointPattern[] {
  let patterns = sensitiveByVendor.get(vendor);
  if (patterns === undefined) {
    patterns = [...vendor.catalogue.map((entry) => entry.pattern), ...vendor.sensitiveEndpoints];
    sensitiveByVendor.set(vendor, patterns);
  }
  return patterns;
}

/** The object call the request is (priced once its object is claimed), if it is one. */
export function objectCallOf(vendor: VendorModule, request: VendorRequest): ObjectCall | undefined {
  return findObjectCall(vendor, request.method, request.segments);
}

/**
 * The call's price before it is reserved.
 * @throws RequestNotPriceableError, or the vendor module's own refusal (`currency_not_supported`).
 */
export function priceOf(kb: KeybrakeContext, vendor: VendorModule, request: VendorRequest): CallPrice {
  return priceCall(vendor, request, kb.config.pricing);
}

/** What settlement books for a call the vendor answered. */
export function settlementOf(
  kb: KeybrakeContext,
  price: CallPrice,
  request: VendorRequest,
  response: VendorResponse,
): CallSettlement {
  return settleCall(price, request, response, kb.config.pricing);
}
