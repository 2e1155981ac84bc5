import { resend } from './resend.js';
import { stripe } from './stripe.js';
import { twilio } from './twilio.js';
import type { VendorModule } from './vendor.js';

/** Every vendor Keybrake can proxy, by name. Adding a vendor: write its module, add it here. */
export const VENDORS: ReadonlyMap<string, VendorModule> = new Map(
  [stripe, twilio, resend].map((vendor) => [vendor.name, vendor]),
);

export type { VendorModule, VendorRequest, VendorResponse, VendorSecrets, UpstreamRequest } from './vendor.js';
