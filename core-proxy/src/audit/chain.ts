import { createHash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import { microsToUsd } from '../pricing/money.js';
import type { AuditInput } from '../store/store.js';

/** The chain's `hash_0`: the previous hash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/** The record as it appears on the wire (`calls` entries) and as it is hashed. */
export interface AuditRecordJson {
  seq: number;
  at: string;
  key_id: string | null;
  vendor: string;
  method: string;
  path: string;
  outcome: AuditInput['outcome'];
  reason: string | null;
  status: number | null;
  cost_usd: number;
  vendor_request_id: string | null;
  idempotency_key: string | null;
  agent_run_label: string | null;
  tainted: boolean;
}

/** Wire form of a record, without its chain fields. */
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
  };
}

/**
 * `hash_n = sha256(hash_{n-1} || canonical_json(record_n))`, where `hash_{n-1}` is the 64-character
 * lower-case hex of the previous hash (64 zeros for the first record) and `record_n` is the wire
 * form of the record (the `calls` entry fields, `seq` included).
 */
export function chainHash(prevHash: string, record: AuditRecordJson): string {
  return createHash('sha256').update(prevHash).update(canonicalJson(record)).digest('hex');
}
