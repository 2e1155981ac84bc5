import type { Micros } from '../pricing/money.js';
import { microsToUsd } from '../pricing/money.js';
import type { KeyIdentity } from '../store/key-identity.js';

/** How a proxied call ended, as the contract names it. */
export type CallOutcome = 'forwarded' | 'blocked' | 'replayed' | 'unknown';

/** What an audit record says, before the store gives it a place in the chain. */
export interface AuditInput {
  /** ISO-8601 time. */
  readonly at: string;
  readonly keyId: string | null;
  readonly vendor: string;
  readonly method: string;
  readonly path: string;
  readonly outcome: CallOutcome;
  /** The error code when blocked or unknown. */
  readonly reason: string | null;
  readonly status: number | null;
  readonly costMicros: Micros;
  readonly vendorRequestId: string | null;
  readonly idempotencyKey: string | null;
  readonly agentRunLabel: string | null;
  readonly tainted: boolean;
  /**
   * Issue 25: the workload identity the call's key was issued to; absent or null for a key issued
   * with an issuer key (its records keep the shape they always had). @default null
   */
  readonly identity?: KeyIdentity | null;
}

/**
 * What is known of a call when its cost is reserved: kept with the reservation, so that a call
 * whose process died before settling it can still be audited (see {@link interruptedAuditInput}).
 */
export type PendingAudit = Omit<AuditInput, 'at' | 'outcome' | 'reason' | 'status' | 'costMicros' | 'vendorRequestId'>;

/** The `reason` of the record of a call whose process died between reserve and settle. */
export const INTERRUPTED_REASON = 'interrupted';

/**
 * The audit record of a reservation found orphaned (its process died mid-call): whether the vendor
 * charged is unknown, so the reserved amount is booked as spend of unknown outcome. Both stores
 * build it here: the embedded one when it recovers at start-up, the Redis one when its sweeper
 * finds a reservation past its deadline.
 */
export function interruptedAuditInput(pending: PendingAudit, at: string, reservedMicros: Micros): AuditInput {
  return {
    ...pending,
    at,
    outcome: 'unknown',
    reason: INTERRUPTED_REASON,
    status: null,
    costMicros: reservedMicros,
    vendorRequestId: null,
  };
}

/** The record as it appears on the wire (`calls` entries) and as it is hashed. */
export interface AuditRecordJson {
  seq: number;
  at: string;
  key_id: string | null;
  vendor: string;
  method: string;
  path: string;
  outcome: CallOutcome;
  reason: string | null;
  status: number | null;
  cost_usd: number;
  vendor_request_id: string | null;
  idempotency_key: string | null;
  agent_run_label: string | null;
  tainted: boolean;
  /** Issue 25: present only on records of a key issued to a workload identity (never its token). */
  identity?: { issuer: string; subject: string; policy: string };
}

/**
 * Wire form of a record, without its chain fields: the one place an {@link AuditInput} becomes a
 * record, for both stores (what they hash, what `calls` and the export show).
 */
export function auditRecordJson(seq: number, input: AuditInput): AuditRecordJson {
  return {
    seq,
    at: input.at,
    key_id: input.keyId,
    vendor: input.vendor,
    method: input.method,
    path: input.path,
    outcome: input.outcome,
    reason: input.reason,
    status: input.status,
    cost_usd: microsToUsd(input.costMicros),
    vendor_request_id: input.vendorRequestId,
    idempotency_key: input.idempotencyKey,
    agent_run_label: input.agentRunLabel,
    tainted: input.tainted,
    ...(input.identity
      ? { identity: { issuer: input.identity.issuer, subject: input.identity.subject, policy: input.identity.policy } }
      : {}),
  };
}
