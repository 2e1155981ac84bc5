import { ConfigError, type Env, positiveInt, readSecret } from '../env.js';
import { parseThresholdList } from './alert-thresholds.js';

/** Where and how alerts are delivered (`KEYBRAKE_ALERT_*`). */
export interface AlertWebhookConfig {
  /** `KEYBRAKE_ALERT_WEBHOOK_URL(_FILE)`: read like a secret (a Slack webhook URL is one); never logged. */
  readonly url: string;
  /** `KEYBRAKE_ALERT_WEBHOOK_SECRET(_FILE)`: the HMAC key of `Keybrake-Signature`; never logged. Required for `json`. */
  readonly secret: string | null;
  /** `KEYBRAKE_ALERT_FORMAT`. @default 'json' */
  readonly format: 'json' | 'slack';
  /** `KEYBRAKE_ALERT_MAX_ATTEMPTS`: attempts before an alert is marked failed. @default 12 */
  readonly maxAttempts: number;
  /** `KEYBRAKE_ALERT_MAX_AGE_S`, in ms: an alert older than this is marked failed, not sent. @default 86400 s */
  readonly maxAgeMs: number;
  /** `KEYBRAKE_ALERT_RETRY_BASE_MS`: the first retry's delay, doubled each attempt (at most 5 min), with jitter. @default 1000 */
  readonly retryBaseMs: number;
  /** `KEYBRAKE_ALERT_TIMEOUT_MS`: one delivery attempt's limit; a timeout is retried. @default 10000 */
  readonly timeoutMs: number;
}

/** Alert configuration (issue 26). */
export interface AlertConfig {
  /** Null: no webhook, nothing is sent, and no default thresholds apply. */
  readonly webhook: AlertWebhookConfig | null;
  /** `KEYBRAKE_ALERT_THRESHOLDS`: thresholds of a key issued without `alerts`, when a webhook is set. @default [0.8, 1] */
  readonly defaultFractions: readonly number[];
}

/** Reads the alert settings; a bad value is a `ConfigError` naming the variable, never its value. */
export function loadAlertConfig(env: Env): AlertConfig {
  const url = readSecret(env, 'KEYBRAKE_ALERT_WEBHOOK_URL');
  let defaultFractions: number[];
  try {
    defaultFractions = parseThresholdList(env.KEYBRAKE_ALERT_THRESHOLDS ?? '0.8,1');
  } catch (error) {
    throw new ConfigError((error as Error).message);
  }
  if (url === undefined) return { webhook: null, defaultFractions: [] };
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConfigError('KEYBRAKE_ALERT_WEBHOOK_URL is not a URL.');
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConfigError('KEYBRAKE_ALERT_WEBHOOK_URL must be an http or https URL.');
  }
  const format = (env.KEYBRAKE_ALERT_FORMAT || 'json').trim().toLowerCase();
  if (format !== 'json' && format !== 'slack') throw new ConfigError('KEYBRAKE_ALERT_FORMAT must be json or slack.');
  const secret = readSecret(env, 'KEYBRAKE_ALERT_WEBHOOK_SECRET') ?? null;
  if (format === 'json' && secret === null) {
    // An unsigned alert can be forged by anyone who can reach the receiver.
    throw new ConfigError('KEYBRAKE_ALERT_WEBHOOK_SECRET is required with KEYBRAKE_ALERT_FORMAT=json.');
  }
  return {
    webhook: {
      url,
      secret,
      format,
      maxAttempts: positiveInt(env, 'KEYBRAKE_ALERT_MAX_ATTEMPTS', 12),
      maxAgeMs: positiveInt(env, 'KEYBRAKE_ALERT_MAX_AGE_S', 86_400) * 1000,
      retryBaseMs: positiveInt(env, 'KEYBRAKE_ALERT_RETRY_BASE_MS', 1000),
      timeoutMs: positiveInt(env, 'KEYBRAKE_ALERT_TIMEOUT_MS', 10_000),
    },
    defaultFractions,
  };
}
