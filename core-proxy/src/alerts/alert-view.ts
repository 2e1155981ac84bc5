import { microsToUsd } from '../pricing/money.js';
import type { AlertEntry, KeyAlerts } from '../store/store.js';

function firedView(entry: AlertEntry): Record<string, unknown> {
  return {
    period: entry.period,
    cap: entry.cap,
    fired_at: new Date(entry.createdAt).toISOString(),
    spent_usd: microsToUsd(entry.spentMicros),
    // One webhook, one delivery per alert; its id is the alert's, as the receiver sees it.
    deliveries: [{ id: entry.id, state: entry.state, attempts: entry.attempts, last_status: entry.lastStatus }],
  };
}

/**
 * The alert fields of `GET /vault/keys/{id}` (issue 26): `alerts`, each threshold with what it
 * fired (per cap period: `lifetime` or the UTC day of the daily cap) and its delivery, and
 * `cap_hit_alerts`, the cap hits fired likewise.
 */
export function alertsView(alerts: KeyAlerts): { alerts: unknown[]; cap_hit_alerts: unknown[] } {
  return {
    alerts: alerts.fractions.map((fraction) => ({
      at_fraction: fraction,
      fired: alerts.fired
        .filter((entry) => entry.type === 'keybrake.alert.threshold' && entry.atFraction === fraction)
        .map(firedView),
    })),
    cap_hit_alerts: alerts.fired.filter((entry) => entry.type === 'keybrake.alert.cap_hit').map(firedView),
  };
}
