// `pnpm run generate:vendors`: writes the built-in vendor names the client and Temporal packages
// use (integrations/client/src/vendors.ts) from core-proxy's registry, after `tsc -b core-proxy`.
import { writeFileSync } from 'node:fs';
import { BUILT_IN_VENDORS } from '../core-proxy/dist/vendors/registry.js';
import { VENDOR_NAMES_FILE, vendorNamesSource } from '../core-proxy/dist/vendors/vendor-names-source.js';

const target = new URL(`../${VENDOR_NAMES_FILE}`, import.meta.url);
writeFileSync(target, vendorNamesSource(BUILT_IN_VENDORS.map((vendor) => vendor.name)));
console.log(`wrote ${VENDOR_NAMES_FILE}`);
