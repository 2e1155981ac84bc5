import type { VaultKeyView } from './api';

/** A key's spend against the cap that binds first. */
export interface SpendAgainstCap {
  readonly spent: number;
  readonly reserved: number;
  readonly unknown: number;
  /** The binding cap in USD, or null when the key has none the bar can show. */
  readonly cap: number | null;
  /** Which cap: the lifetime one or today's. */
  readonly kind: 'lifetime' | 'daily' | null;
}

/**
 * The cap the bar measures against: whichever leaves less room (the lifetime cap against lifetime
 * spend, the daily cap against today's), as the proxy refuses on the first one a call would pass.
 */
export function spendAgainstCap(key: VaultKeyView): SpendAgainstCap {
  const unknown = key.unknown_usd ?? 0;
  const lifetime = key.usd_cap === null ? null : { cap: key.usd_cap, spent: key.spent_usd };
  const daily =
    key.daily_usd_cap === null ? null : { cap: key.daily_usd_cap, spent: key.spent_today_usd ?? key.spent_usd };
  const room = (c: { cap: number; spent: number }): number => c.cap - c.spent;
  const binding = lifetime && daily ? (room(daily) < room(lifetime) ? daily : lifetime) : (lifetime ?? daily);
  if (binding === null) return { spent: key.spent_usd, reserved: key.reserved_usd, unknown, cap: null, kind: null };
  return {
    spent: binding.spent,
    reserved: key.reserved_usd,
    unknown,
    cap: binding.cap,
    kind: binding === lifetime ? 'lifetime' : 'daily',
  };
}
