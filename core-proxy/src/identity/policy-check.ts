import { PolicyRefusedError } from '../errors.js';
import { formatEndpointPattern, isPatternCovered } from '../keys/allowlist.js';
import type { IssueKeyInput } from '../keys/key-issuance.js';
import { microsToUsd } from '../pricing/money.js';
import type { PolicyGrant } from './issuers-file.js';
import { isUnderLabelPrefix } from './run-label.js';
import type { WorkloadIdentity } from './token-verifier.js';

/**
 * Refuses (403) a `POST /vault/keys` beyond the caller's policy, checked on the validated body
 * (allowlist entries already normalized the way the proxy matches calls: percent-decoded once,
 * `//` and `.` dropped, `..` resolved, the method upper-cased, an encoded `/` refused), so what
 * is compared with the ceiling is what the key will allow. Nothing is issued on a refusal.
 */
export function checkIssuanceAgainstPolicy(input: IssueKeyInput, grant: PolicyGrant): void {
  if (!grant.vendors.has(input.vendor)) {
    throw new PolicyRefusedError('policy_vendor', `The policy allows vendors: ${[...grant.vendors].join(', ')}.`);
  }
  if (grant.maxCapMicros !== null && (input.capMicros === null || input.capMicros > grant.maxCapMicros)) {
    throw new PolicyRefusedError('policy_cap', `usd_cap is required and at most ${microsToUsd(grant.maxCapMicros)}.`);
  }
  if (
    grant.maxDailyCapMicros !== null &&
    (input.dailyCapMicros === null || input.dailyCapMicros > grant.maxDailyCapMicros)
  ) {
    throw new PolicyRefusedError(
      'policy_cap',
      `daily_usd_cap is required and at most ${microsToUsd(grant.maxDailyCapMicros)}.`,
    );
  }
  if (input.ttlSeconds > grant.maxTtlSeconds) {
    throw new PolicyRefusedError('policy_ttl', `expires_in may be at most ${grant.maxTtlSeconds} seconds.`);
  }
  const ceiling = grant.allowedEndpoints;
  if (ceiling !== null) {
    // A `*` in a request is covered only by a `*` in the ceiling: a wildcard cannot widen it.
    const wider = input.allowedEndpoints.filter((pattern) => !isPatternCovered(pattern, ceiling));
    if (wider.length > 0) {
      throw new PolicyRefusedError(
        'policy_endpoints',
        `Not within the policy's allowed_endpoints: ${wider.map(formatEndpointPattern).join(', ')}.`,
      );
    }
  }
  if (grant.labelPrefix !== null) {
    if (input.agentRunLabel === null || !isUnderLabelPrefix(input.agentRunLabel, grant.labelPrefix)) {
      throw new PolicyRefusedError(
        'policy_label',
        `agent_run_label is required, canonical (no "." or ".." segment, no "//", "%" or "\\"), and starts with "${grant.labelPrefix}".`,
      );
    }
  }
}

/** Whether a key was issued to this identity: the same issuer and subject (the policy may differ). */
export function isOwnKey(identity: WorkloadIdentity, keyIdentity: WorkloadIdentity | null | undefined): boolean {
  return !!keyIdentity && keyIdentity.issuer === identity.issuer && keyIdentity.subject === identity.subject;
}

/**
 * Refuses (403 `policy_not_own_key`) a read (`read`) or a revoke or taint (`manage`) of a key not
 * issued to this identity, unless its policy's `other_keys` allows it.
 */
export function assertKeyAccess(
  identity: WorkloadIdentity,
  grant: PolicyGrant,
  keyIdentity: WorkloadIdentity | null | undefined,
  action: 'read' | 'manage',
): void {
  if (isOwnKey(identity, keyIdentity)) return;
  if (grant.otherKeys === 'manage' || (grant.otherKeys === 'read' && action === 'read')) return;
  throw new PolicyRefusedError('policy_not_own_key');
}
