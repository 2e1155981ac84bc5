// Generated from core-proxy's vendor registry (BUILT_IN_VENDORS) by `pnpm run generate:vendors`.
// Do not edit: a test fails when this file and the registry disagree.

/** The vendors built into the Keybrake proxy. */
export const BUILT_IN_VENDORS = ['stripe', 'twilio', 'resend'] as const;

/** A vendor built into the proxy. */
export type BuiltInVendor = (typeof BUILT_IN_VENDORS)[number];

/** A vendor name: a built-in one, or one the operator declared in the proxy's `KEYBRAKE_VENDORS_FILE`. */
export type VendorName = BuiltInVendor | (string & {});
