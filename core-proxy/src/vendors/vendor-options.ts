import type { Env } from '../env.js';

/**
 * A vendor's own pricing knobs: what they default to, how they are read from the environment,
 * and what each variable means. The vendor module owns them; the pipeline only carries the values
 * (`PricingOptions.vendorOptions`) to the module's own pricing functions.
 */
export interface VendorOptionsSpec<T> {
  /** The knobs when nothing is configured. */
  readonly defaults: T;
  /**
   * Reads the knobs from the environment.
   * @throws an error naming the variable when a value cannot be used (the server does not start).
   */
  read(env: Env): T;
  /** Every environment variable `read` looks at, with one line of documentation (OpenAPI, README). */
  readonly environment: Readonly<Record<string, string>>;
}

/** The knobs in force for every vendor, by the vendor's spec. */
export class VendorOptionValues {
  /** No vendor configured: every vendor's defaults. */
  static readonly DEFAULTS = new VendorOptionValues(new Map());

  constructor(private readonly values: ReadonlyMap<VendorOptionsSpec<unknown>, unknown>) {}

  /** The knobs of one vendor: as configured, else the spec's defaults. */
  get<T>(spec: VendorOptionsSpec<T>): T {
    const value = this.values.get(spec as VendorOptionsSpec<unknown>);
    return value === undefined ? spec.defaults : (value as T);
  }
}
