/**
 * Money is kept as integer micro-dollars (1e-6 USD) everywhere inside the proxy, so that sums of
 * many small Twilio or Resend prices never drift the way floating-point dollars would.
 */

/** Integer micro-dollars. */
export type Micros = number;

export const MICROS_PER_USD = 1_000_000;

/** Dollars (as given by a user or a vendor) to micro-dollars, rounded up so estimates stay upper bounds. */
export function usdToMicros(usd: number): Micros {
  // Round the float noise away first (0.1 * 1e6 = 100000.00000000001), then round up.
  return Math.ceil(Math.round(usd * MICROS_PER_USD * 1000) / 1000);
}

/** Micro-dollars to dollars for the wire. */
export function microsToUsd(micros: Micros): number {
  return micros / MICROS_PER_USD;
}
