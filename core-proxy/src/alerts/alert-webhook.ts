import { createHmac } from 'node:crypto';
import { microsToUsd } from '../pricing/money.js';
import type { AlertEntry } from '../store/store.js';

/** The JSON body of an alert (the contract's shape): no vault key, secret or issuer key in it. */
export function alertBody(entry: AlertEntry): Record<string, unknown> {
  return {
    id: entry.id,
    type: entry.type,
    created_at: new Date(entry.createdAt).toISOString(),
    key_id: entry.keyId,
    agent_run_label: entry.agentRunLabel,
    vendor: entry.vendor,
    spent_usd: microsToUsd(entry.spentMicros),
    cap_usd: microsToUsd(entry.capMicros),
    cap: entry.cap,
    period: entry.period,
    at_fraction: entry.atFraction,
  };
}

/** Slack's mrkdwn control characters; a run label must not ping a channel (`<!channel>`). */
function slackEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A Slack incoming-webhook body (`{"text": ...}`). */
export function slackBody(entry: AlertEntry): { text: string } {
  const usd = (micros: number): string => `$${microsToUsd(micros).toFixed(2)}`;
  const label = entry.agentRunLabel === null ? '' : ` (${slackEscape(entry.agentRunLabel)})`;
  const cap = entry.cap === 'daily' ? `daily cap for ${entry.period}` : 'lifetime cap';
  const what =
    entry.type === 'keybrake.alert.cap_hit'
      ? `hit its ${cap}: a call was refused`
      : `reached ${Math.round((entry.atFraction ?? 0) * 1000) / 10}% of its ${cap}`;
  return {
    text:
      `Keybrake: ${entry.vendor} key ${entry.keyId}${label} ${what}; ` +
      `${usd(entry.spentMicros)} of ${usd(entry.capMicros)}. (alert ${entry.id})`,
  };
}

/**
 * `Keybrake-Signature: t=<unix s>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, Stripe's scheme: the
 * receiver recomputes it over the raw body and refuses a stale `t` (replay).
 */
export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex');
  return `t=${unixSeconds},v1=${mac}`;
}
