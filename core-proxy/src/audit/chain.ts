import { createHash } from 'node:crypto';
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
  const text = canonicalJson(record);
  return { text, hash: createHash('sha256').update(prevHash).update(text).digest('hex') };
}
