/** Where the generated list of built-in vendor names lives, from the repository root. */
export const VENDOR_NAMES_FILE = 'integrations/client/src/vendors.ts';

/**
 * The source of `integrations/client/src/vendors.ts`: the built-in vendor names, for the client's
 * and Temporal's types, which must not load the proxy. `pnpm run generate:vendors` writes it from
 * the registry; a test fails when it is out of date.
 */
export function vendorNamesSource(names: readonly string[]): string {
  return `// Generated from core-proxy's vendor registry (BUILT_IN_VENDORS) by \`pnpm run generate:vendors\`.
// Do not edit: a test fails when this file and the registry disagree.

/** The vendors built into the Keybrake proxy. */
export const BUILT_IN_VENDORS = [${names.map((name) => `'${name}'`).join(', ')}] as const;

/** A vendor built into the proxy. */
export type BuiltInVendor = (typeof BUILT_IN_VENDORS)[number];

/** A vendor name: a built-in one, or one the operator declared in the proxy's \`KEYBRAKE_VENDORS_FILE\`. */
export type VendorName = BuiltInVendor | (string & {});
`;
}
