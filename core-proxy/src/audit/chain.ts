import { createHash, hash } from 'node:crypto';
import { canonicalJson } from './canonical-json.js';
import type { AuditRecordJson } from './record.js';

export type { AuditRecordJson } from './record.js';

/** The chain's `hash_0`: the previous hash of the first record. */
export const GENESIS_HASH = '0'.repeat(64);

/**
 * `hash_n = sha256(hash_{n-1} || canonical_json(record_n))`, where `hash_{n-1}` is the 64-character
 * lower-case hex of the previous hash (64 zeros for the first record) and `record_n` is the wire
 * form of the record (the `calls` entry fields, `seq` included; see `auditRecordJson`).
 */
export function chainHash(prevHash: string, record: AuditRecordJson): string {
  return createHash('sha256').update(prevHash).update(canonicalJson(record)).digest('hex');
}

/** A record's chain entry: its stored text (canonical JSON) and its hash after `prevHash`. */
export function chainEntry(
  prevHash: string,
  record: AuditRecordJson,
): { readonly text: string; readonly hash: string } {
  const text = auditRecordText(record);
  // One-shot over the joined text (the same bytes: the previous hash is ASCII hex).
  return { text, hash: hash('sha256', prevHash + text, 'hex') };
}

const AUDIT_FIELDS = 14;

/**
 * `canonicalJson(record)` for the record shape the stores write, built directly in the canonical
 * (sorted) key order instead of sorting generically; any other shape goes through `canonicalJson`.
 * The bytes are the same either way (`test/canonical-json.test.ts` holds it to that).
 */
export function auditRecordText(record: AuditRecordJson): string {
  const r = record;
  if (
    Object.keys(r).length !== AUDIT_FIELDS ||
    r.at === undefined ||
    r.key_id === undefined ||
    r.vendor === undefined ||
    r.method === undefined ||
    r.path === undefined ||
    r.outcome === undefined ||
    r.reason === undefined ||
    r.idempotency_key === undefined ||
    r.agent_run_label === undefined ||
    r.vendor_request_id === undefined ||
    typeof r.tainted !== 'boolean' ||
    !Number.isFinite(r.seq) ||
    !Number.isFinite(r.cost_usd) ||
    (r.status !== null && !Number.isFinite(r.status))
  ) {
    return canonicalJson(record);
  }
  const json = JSON.stringify;
  return (
    `{"agent_run_label":${json(r.agent_run_label)},"at":${json(r.at)},"cost_usd":${json(r.cost_usd)}` +
    `,"idempotency_key":${json(r.idempotency_key)},"key_id":${json(r.key_id)},"method":${json(r.method)}` +
    `,"outcome":${json(r.outcome)},"path":${json(r.path)},"reason":${json(r.reason)},"seq":${json(r.seq)}` +
    `,"status":${json(r.status)},"tainted":${json(r.tainted)},"vendor":${json(r.vendor)}` +
    `,"vendor_request_id":${json(r.vendor_request_id)}}`
  );
}
