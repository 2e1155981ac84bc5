import { resend } from './resend.js';
import { stripe } from './stripe.js';
import { twilio } from './twilio.js';
import type { Env } from '../env.js';
import type { VendorModule } from './vendor.js';
import { type VendorOptionsSpec, VendorOptionValues } from './vendor-options.js';

/**
 * The vendors built into Keybrake. Adding one: write its module (`vendors/<name>.ts`, implementing
 * {@link VendorModule}) and add it here. Every other list of vendors (routes, issuance, OpenAPI,
 * configuration, the client's and Temporal's vendor types, test secrets) is derived from this one.
 */
export const BUILT_IN_VENDORS: readonly VendorModule[] = [stripe, twilio, resend];

/** A vendor name: a path prefix and an environment variable part (`KEYBRAKE_<NAME>_BASE_URL`). */
export const VENDOR_NAME = /^[a-z][a-z0-9-]{0,31}$/;

/** First path segments the proxy serves itself: no vendor can be named after one. */
export const RESERVED_VENDOR_NAMES: ReadonlySet<string> = new Set([
  'vault',
  'audit',
  'healthz',
  'readyz',
  'metrics',
  'openapi.json',
]);

/** A vendor that cannot join a registry: a bad or duplicate name. */
export class VendorRegistryError extends Error {
  override readonly name = 'VendorRegistryError';

  constructor(
    message: string,
    /** The vendor name refused. */
    readonly vendor: string,
  ) {
    super(message);
  }
}

/**
 * Every vendor one proxy serves, by name: the built-in ones and those declared in
 * `KEYBRAKE_VENDORS_FILE`. Built once at start (`KeybrakeConfig.vendors`) and read-only after.
 */
export class VendorRegistry implements Iterable<VendorModule> {
  private readonly byName: ReadonlyMap<string, VendorModule>;

  /** @throws VendorRegistryError for a name that is malformed, reserved or taken. */
  constructor(vendors: Iterable<VendorModule>) {
    const byName = new Map<string, VendorModule>();
    for (const vendor of vendors) {
      if (!VENDOR_NAME.test(vendor.name) || RESERVED_VENDOR_NAMES.has(vendor.name)) {
        throw new VendorRegistryError(
          `"${vendor.name}" is not a vendor name: lower-case letters, digits and "-", starting with a letter, at most 32, and not one of ${[...RESERVED_VENDOR_NAMES].join(', ')}.`,
          vendor.name,
        );
      }
      if (byName.has(vendor.name)) {
        throw new VendorRegistryError(`"${vendor.name}" is already a vendor.`, vendor.name);
      }
      byName.set(vendor.name, vendor);
    }
    this.byName = byName;
  }

  /** The built-in vendors, plus `extra` (declared ones, or a test's). */
  static withBuiltIns(extra: Iterable<VendorModule> = []): VendorRegistry {
    return new VendorRegistry([...BUILT_IN_VENDORS, ...extra]);
  }

  /** The vendor of that name, if this proxy serves it. */
  get(name: string): VendorModule | undefined {
    return this.byName.get(name);
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Every vendor name, built-in ones first, in registry order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  [Symbol.iterator](): Iterator<VendorModule> {
    return this.byName.values();
  }

  /** Reads every vendor's own pricing knobs from the environment. */
  readOptions(env: Env): VendorOptionValues {
    const values = new Map<VendorOptionsSpec<unknown>, unknown>();
    for (const vendor of this.byName.values()) {
      if (vendor.options) values.set(vendor.options, vendor.options.read(env));
    }
    return new VendorOptionValues(values);
  }
}

/** The built-in vendors alone: for code that runs with no configuration. */
export const BUILT_IN_REGISTRY = VendorRegistry.withBuiltIns();

/** The environment variable that overrides a vendor's base URL: `KEYBRAKE_<NAME>_BASE_URL`. */
export function baseUrlVariable(vendorName: string): string {
  return `KEYBRAKE_${vendorName.toUpperCase().replace(/-/g, '_')}_BASE_URL`;
}
