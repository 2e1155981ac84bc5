import { ConfigError, type Env } from '../env.js';
import { DEFAULT_IDEMPOTENCY_RETENTION_MS } from './store.js';

/** What expires, and when it is removed (issue 23), read by {@link readExpiryConfig}. */
export interface ExpiryConfig {
  /**
   * `KEYBRAKE_EXPIRED_KEY_RETENTION`: how long a key family is kept after its root key expired
   * (`GET /vault/keys/{id}`, its calls and spend still answer meanwhile), ms. @default 30 days
   */
  readonly keyRetentionMs: number;
  /**
   * `KEYBRAKE_IDEMPOTENCY_RETENTION`: how long a kept response replays, ms; at least 24 hours
   * (the contract's minimum). @default 24 hours
   */
  readonly idempotencyRetentionMs: number;
}

/** The default of `KEYBRAKE_EXPIRED_KEY_RETENTION`: a month of recent runs stays readable. */
export const DEFAULT_EXPIRED_KEY_RETENTION_MS = 30 * 86_400_000;

const UNITS_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A retention: `30d`, `36h`, `90m`, `45s`, `500ms`; a bare number is seconds. */
export function parseRetentionMs(name: string, text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(text);
  const ms = match ? Number(match[1]) * (UNITS_MS[match[2] ?? 's'] as number) : Number.NaN;
  if (!(ms >= 1)) throw new ConfigError(`${name} must be a duration such as 30d, 36h or 90m.`);
  return Math.round(ms);
}

/** Reads the retentions; refuses an idempotency retention under the contract's 24 hours. */
export function readExpiryConfig(env: Env): ExpiryConfig {
  const keyText = env.KEYBRAKE_EXPIRED_KEY_RETENTION;
  const idemText = env.KEYBRAKE_IDEMPOTENCY_RETENTION;
  const idempotencyRetentionMs =
    idemText === undefined || idemText.trim() === ''
      ? DEFAULT_IDEMPOTENCY_RETENTION_MS
      : parseRetentionMs('KEYBRAKE_IDEMPOTENCY_RETENTION', idemText);
  if (idempotencyRetentionMs < DEFAULT_IDEMPOTENCY_RETENTION_MS) {
    throw new ConfigError(
      'KEYBRAKE_IDEMPOTENCY_RETENTION must be at least 24h: the contract keeps an idempotent response for 24 hours at least.',
    );
  }
  return {
    keyRetentionMs:
      keyText === undefined || keyText.trim() === ''
        ? DEFAULT_EXPIRED_KEY_RETENTION_MS
        : parseRetentionMs('KEYBRAKE_EXPIRED_KEY_RETENTION', keyText),
    idempotencyRetentionMs,
  };
}
