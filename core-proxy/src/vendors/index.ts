import { BUILT_IN_VENDORS } from './registry.js';
import type { VendorModule } from './vendor.js';

/** The built-in vendors by name (derived from {@link BUILT_IN_VENDORS}; declared ones are in `KeybrakeConfig.vendors`). */
export const VENDORS: ReadonlyMap<string, VendorModule> = new Map(
  BUILT_IN_VENDORS.map((vendor) => [vendor.name, vendor]),
);

export {
  BUILT_IN_VENDORS,
  BUILT_IN_REGISTRY,
  VendorRegistry,
  VendorRegistryError,
  baseUrlVariable,
} from './registry.js';
export { type VendorOptionsSpec, VendorOptionValues } from './vendor-options.js';
export type { VendorModule, VendorRequest, VendorResponse, VendorSecrets, UpstreamRequest } from './vendor.js';
