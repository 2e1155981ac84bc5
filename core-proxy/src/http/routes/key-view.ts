import { keyStatus } from '../../keys/key-status.js';
import { type Micros, microsToUsd } from '../../pricing/money.js';
import type { KeyIdentity, VaultKeyState } from '../../store/store.js';
import { type KeyLimits, hasLimits } from '../../store/key-limits.js';

/** Issue 26: a key's limits as the admin API shows them. */
export function limitsView(limits: KeyLimits): Record<string, number | null> {
  return {
    max_requests_per_second: limits.maxRequestsPerSecond,
    max_requests_per_minute: limits.maxRequestsPerMinute,
    max_concurrent: limits.maxConcurrent,
  };
}

function remainingMicros(key: VaultKeyState): Micros | null {
  const limits: Micros[] = [];
  if (key.capMicros !== null) limits.push(key.capMicros - key.spentMicros - key.reservedMicros);
  if (key.dailyCapMicros !== null) limits.push(key.dailyCapMicros - key.spentTodayMicros - key.reservedTodayMicros);
  return limits.length === 0 ? null : Math.max(0, Math.min(...limits));
}

/** Issue 25: the workload identity a key was issued to; null for an issuer key's. Never the token. */
export function identityView(identity: KeyIdentity | null | undefined): Record<string, string> | null {
  return identity ? { issuer: identity.issuer, subject: identity.subject, policy: identity.policy } : null;
}

/** The `GET /vault/keys/{id}` object: what the admin API shows of a key (never its vault key or hash). */
export function keyView(key: VaultKeyState, now: number): Record<string, unknown> {
  const remaining = remainingMicros(key);
  return {
    key_id: key.keyId,
    vendor: key.vendor,
    status: keyStatus(key, now),
    spent_usd: microsToUsd(key.spentMicros),
    reserved_usd: microsToUsd(key.reservedMicros),
    remaining_usd: remaining === null ? null : microsToUsd(remaining),
    spent_today_usd: microsToUsd(key.spentTodayMicros),
    unknown_usd: microsToUsd(key.unknownMicros),
    expires_at: new Date(key.expiresAt).toISOString(),
    created_at: new Date(key.createdAt).toISOString(),
    revoked_at: key.revokedAt === null ? null : new Date(key.revokedAt).toISOString(),
    agent_run_label: key.agentRunLabel,
    daily_usd_cap: key.dailyCapMicros === null ? null : microsToUsd(key.dailyCapMicros),
    usd_cap: key.capMicros === null ? null : microsToUsd(key.capMicros),
    allowed_endpoints: key.allowedEndpoints,
    parent_key_id: key.parentKeyId,
    tainted: key.tainted,
    identity: identityView(key.identity),
    // Issue 26: absent for a key with no limit of its own (an ancestor's are on the ancestor).
    ...(hasLimits(key.limits) ? { limits: { ...limitsView(key.limits), in_flight: key.inFlight ?? 0 } } : {}),
  };
}
