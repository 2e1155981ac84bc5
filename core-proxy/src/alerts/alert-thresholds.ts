import { createHash } from 'node:crypto';
import { InvalidRequestError } from '../errors.js';
import type { AlertType } from '../store/store.js';

/** Most thresholds one key may have. */
export const MAX_ALERT_THRESHOLDS = 10;

/**
 * A threshold as text: the form both stores keep and hash into alert ids (the Redis scripts never
 * re-format it), so the embedded store and Redis name the same alert alike.
 */
export function fractionText(fraction: number): string {
  return String(fraction);
}

/**
 * The outbox id of an alert: stable per key, type, cap, period and threshold, so that an alert is
 * appended once however many replicas fire it, and receivers de-duplicate deliveries on it. The
 * Redis scripts compute the same (`redis.sha1hex`).
 */
export function alertId(
  keyId: string,
  type: AlertType,
  cap: 'lifetime' | 'daily',
  period: string,
  fraction: string,
): string {
  const digest = createHash('sha1').update(`${keyId}|${type}|${cap}|${period}|${fraction}`).digest('hex');
  return `alrt_${digest.slice(0, 24)}`;
}

function checkedFractions(values: readonly unknown[], what: string): number[] {
  if (values.length > MAX_ALERT_THRESHOLDS) {
    throw new InvalidRequestError(`${what} may hold at most ${MAX_ALERT_THRESHOLDS} thresholds.`);
  }
  const fractions = values.map((value) => {
    if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > 1) {
      throw new InvalidRequestError(`${what}: at_fraction must be a number with 0 < at_fraction <= 1.`);
    }
    return value;
  });
  if (new Set(fractions).size !== fractions.length) {
    throw new InvalidRequestError(`${what}: thresholds must be distinct.`);
  }
  return fractions.sort((a, b) => a - b);
}

/**
 * The `alerts` field of `POST /vault/keys`: `[{"at_fraction": x}, ...]`, `0 < x <= 1`, at most
 * {@link MAX_ALERT_THRESHOLDS}, distinct. Returns the fractions ascending; `null` when absent
 * (the server's defaults apply).
 */
export function parseAlertsField(value: unknown): number[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value)) throw new InvalidRequestError('alerts must be an array of {"at_fraction": number}.');
  const entries = value.map((entry) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) {
      throw new InvalidRequestError('alerts entries must be objects {"at_fraction": number}.');
    }
    const fields = Object.keys(entry as object);
    if (fields.length !== 1 || fields[0] !== 'at_fraction') {
      throw new InvalidRequestError('alerts entries must have exactly one field, at_fraction.');
    }
    return (entry as { at_fraction: unknown }).at_fraction;
  });
  return checkedFractions(entries, 'alerts');
}

/**
 * `KEYBRAKE_ALERT_THRESHOLDS`: comma-separated fractions (`0.8,1`); empty: none.
 * @throws InvalidRequestError on a malformed list (the configuration turns it into a ConfigError)
 */
export function parseThresholdList(text: string): number[] {
  const parts = text
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
  return checkedFractions(
    parts.map((part) => (/^\d*\.?\d+$/.test(part) ? Number(part) : Number.NaN)),
    'KEYBRAKE_ALERT_THRESHOLDS',
  );
}
