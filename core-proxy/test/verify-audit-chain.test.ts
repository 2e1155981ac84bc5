import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  CheckpointSigner,
  GENESIS_HASH,
  canonicalJson,
  trustedKeys,
  verifyAuditChain,
  type AuditCheckpoint,
  type AuditFailureReason,
  type AuditHead,
  type AuditRecordJson,
  type AuditVerification,
  type ChainEntry,
} from '../src/index.js';

/**
 * `verifyAuditChain` on chains built here, link by link, with the contract's formula
 * (`hash_n = sha256(hash_{n-1} || canonical_json(record_n))`), then broken one way per row. The
 * same function runs behind `GET /audit/verify` and `keybrake audit verify-export`; the tampering
 * tests (audit-tampering.test.ts) break real stores through the public surface.
 */

const trustedSigner = CheckpointSigner.fromPem(CheckpointSigner.generatePem());
const otherSigner = CheckpointSigner.fromPem(CheckpointSigner.generatePem());
const TRUSTED = trustedKeys([trustedSigner.publicKeyPem()]);
const AT = '2026-01-01T00:00:00.000Z';

function record(seq: number, costUsd = seq): AuditRecordJson {
  return {
    seq,
    at: AT,
    key_id: 'vk_table',
    vendor: 'stripe',
    method: 'POST',
    path: '/v1/payment_intents',
    outcome: 'forwarded',
    reason: null,
    status: 200,
    cost_usd: costUsd,
    vendor_request_id: `req_${seq}`,
    idempotency_key: null,
    agent_run_label: 'table',
    tainted: false,
  };
}

const link = (prevHash: string, entry: AuditRecordJson): string =>
  createHash('sha256').update(prevHash).update(canonicalJson(entry)).digest('hex');

/** Chains records 1..n (or the given records) correctly. */
function chain(records: readonly AuditRecordJson[]): ChainEntry[] {
  const entries: ChainEntry[] = [];
  let prevHash = GENESIS_HASH;
  for (const item of records) {
    const hash = link(prevHash, item);
    entries.push({ seq: item.seq, record: item, prevHash, hash });
    prevHash = hash;
  }
  return entries;
}

const SIX = chain([1, 2, 3, 4, 5, 6].map((seq) => record(seq)));
const hashAt = (records: number): string => (records === 0 ? GENESIS_HASH : SIX[records - 1]!.hash);
const headAt = (records: number): AuditHead => ({ records, head: hashAt(records) });
const checkpointAt = (records: number, signer = trustedSigner): AuditCheckpoint => signer.sign(headAt(records), AT);

/** Record 5 edited (cost 5 → 0.05) and everything after it re-hashed: a consistent rewrite. */
const REWRITTEN = chain([1, 2, 3, 4, 5, 6].map((seq) => record(seq, seq === 5 ? 0.05 : seq)));

async function* iterate(entries: readonly ChainEntry[]): AsyncGenerator<ChainEntry> {
  for (const entry of entries) yield entry;
}

interface Row {
  readonly entries: readonly ChainEntry[];
  readonly head?: AuditHead;
  readonly checkpoints?: readonly AuditCheckpoint[];
  readonly rejectUntrusted?: boolean;
}

const verify = (row: Row): Promise<AuditVerification> =>
  verifyAuditChain({
    entries: iterate(row.entries),
    head: row.head,
    checkpoints: row.checkpoints ?? [],
    trusted: TRUSTED,
    rejectUntrusted: row.rejectUntrusted,
  });

type Verified = Extract<AuditVerification, { ok: true }>;

const okWith = (records: number, extra: Partial<Verified> = {}): Verified => ({
  ok: true,
  records,
  head: hashAt(records),
  checkpoints: 0,
  lastCheckpointRecords: 0,
  untrustedCheckpoints: 0,
  ...extra,
});

const failure = (reason: AuditFailureReason, records: number, firstBadSeq: number): AuditVerification => ({
  ok: false,
  records,
  firstBadSeq,
  reason,
});

const replaced = (index: number, change: Partial<ChainEntry>): ChainEntry[] =>
  SIX.map((entry, i) => (i === index ? { ...entry, ...change } : entry));

describe('verifyAuditChain', () => {
  it.each<[string, Row, AuditVerification]>([
    ['an empty chain', { entries: [] }, okWith(0)],
    ['an empty chain whose head says 0 records', { entries: [], head: headAt(0) }, okWith(0)],
    ['six records, no head, no checkpoint', { entries: SIX }, okWith(6)],
    ['six records and the matching head', { entries: SIX, head: headAt(6) }, okWith(6)],
    [
      'six records, the head and two trusted checkpoints',
      { entries: SIX, head: headAt(6), checkpoints: [checkpointAt(6), checkpointAt(3)] },
      okWith(6, { checkpoints: 2, lastCheckpointRecords: 6 }),
    ],
    [
      'a checkpoint older than the chain end',
      { entries: SIX, checkpoints: [checkpointAt(4)] },
      okWith(6, { checkpoints: 1, lastCheckpointRecords: 4 }),
    ],
    [
      'records past the head are not read (record 5 is garbage)',
      { entries: replaced(4, { record: undefined }), head: headAt(4) },
      okWith(4),
    ],
    [
      'a checkpoint of an untrusted key is left out and counted',
      { entries: SIX, checkpoints: [checkpointAt(6, otherSigner), checkpointAt(3)] },
      okWith(6, { checkpoints: 1, lastCheckpointRecords: 3, untrustedCheckpoints: 1 }),
    ],
    [
      'a truncated chain with nothing to hold it against passes (why checkpoints exist)',
      { entries: SIX.slice(0, 4) },
      okWith(4),
    ],
    [
      'a consistent rewrite with nothing to hold it against passes (why checkpoints exist)',
      { entries: REWRITTEN },
      { ...okWith(6), head: REWRITTEN[5]!.hash },
    ],
    // The chain itself
    ['a record edited in place', { entries: replaced(2, { record: record(3, 0.03) }) }, failure('chain_broken', 2, 3)],
    ['the first record edited', { entries: replaced(0, { record: record(1, 100) }) }, failure('chain_broken', 0, 1)],
    ['the last record edited', { entries: replaced(5, { record: record(6, 0) }) }, failure('chain_broken', 5, 6)],
    ['a record removed', { entries: [...SIX.slice(0, 2), ...SIX.slice(3)] }, failure('chain_broken', 2, 3)],
    ['two records swapped', { entries: [SIX[0]!, SIX[2]!, SIX[1]!, ...SIX.slice(3)] }, failure('chain_broken', 1, 2)],
    ['a record duplicated', { entries: [...SIX.slice(0, 3), SIX[2]!, ...SIX.slice(3)] }, failure('chain_broken', 3, 4)],
    ['an entry whose seq is wrong', { entries: replaced(3, { seq: 40 }) }, failure('chain_broken', 3, 4)],
    [
      'a record whose own seq disagrees with its entry',
      { entries: replaced(3, { record: { ...record(4), seq: 5 } }) },
      failure('chain_broken', 3, 4),
    ],
    [
      'a broken link: prev hash edited',
      { entries: replaced(3, { prevHash: 'f'.repeat(64) }) },
      failure('chain_broken', 3, 4),
    ],
    ['a stored hash edited', { entries: replaced(1, { hash: '0'.repeat(64) }) }, failure('chain_broken', 1, 2)],
    ['the last stored hash edited', { entries: replaced(5, { hash: 'a'.repeat(64) }) }, failure('chain_broken', 5, 6)],
    ['an unreadable record', { entries: replaced(1, { record: undefined }) }, failure('chain_broken', 1, 2)],
    ['a chain not starting at the genesis hash', { entries: SIX.slice(1) }, failure('chain_broken', 0, 1)],
    // Against the stored head
    ['a chain shorter than its head', { entries: SIX.slice(0, 4), head: headAt(6) }, failure('truncated', 4, 5)],
    ['an empty chain whose head says 6 records', { entries: [], head: headAt(6) }, failure('truncated', 0, 1)],
    [
      'a consistent rewrite against the stored head',
      { entries: REWRITTEN, head: headAt(6) },
      failure('chain_broken', 6, 6),
    ],
    // Against signed checkpoints
    [
      'a chain shorter than a checkpoint',
      { entries: SIX.slice(0, 4), checkpoints: [checkpointAt(6)] },
      failure('truncated', 4, 5),
    ],
    [
      'a consistent rewrite after the last matching checkpoint',
      { entries: REWRITTEN, checkpoints: [checkpointAt(3), checkpointAt(6)] },
      failure('checkpoint_mismatch', 6, 4),
    ],
    [
      'a consistent rewrite and no earlier checkpoint',
      { entries: REWRITTEN, checkpoints: [checkpointAt(6)] },
      failure('checkpoint_mismatch', 6, 1),
    ],
    [
      'a validly signed checkpoint of a head the chain never had',
      { entries: SIX, checkpoints: [checkpointAt(2), trustedSigner.sign({ records: 4, head: 'e'.repeat(64) }, AT)] },
      failure('checkpoint_mismatch', 4, 3),
    ],
    [
      'a bad signature',
      { entries: SIX, checkpoints: [{ ...checkpointAt(6), signature: Buffer.alloc(64, 7).toString('base64') }] },
      failure('checkpoint_signature_invalid', 0, 6),
    ],
    [
      'a signature that is not base64 at all',
      { entries: SIX, checkpoints: [{ ...checkpointAt(6), signature: 'not a signature' }] },
      failure('checkpoint_signature_invalid', 0, 6),
    ],
    [
      'a checkpoint whose head was edited after signing',
      { entries: SIX, checkpoints: [{ ...checkpointAt(6), head: REWRITTEN[5]!.hash }] },
      failure('checkpoint_signature_invalid', 0, 6),
    ],
    [
      'a checkpoint whose record count was edited after signing',
      { entries: SIX, checkpoints: [{ ...checkpointAt(6), records: 5 }] },
      failure('checkpoint_signature_invalid', 0, 5),
    ],
    [
      'a checkpoint whose time was edited after signing',
      { entries: SIX, checkpoints: [{ ...checkpointAt(6), at: '2027-01-01T00:00:00.000Z' }] },
      failure('checkpoint_signature_invalid', 0, 6),
    ],
    [
      "another key's signature under the trusted key's id",
      { entries: SIX, checkpoints: [{ ...checkpointAt(6, otherSigner), key_id: trustedSigner.keyId }] },
      failure('checkpoint_signature_invalid', 0, 6),
    ],
    [
      'an untrusted key where the verifier pinned its keys',
      { entries: SIX, checkpoints: [checkpointAt(3), checkpointAt(5, otherSigner)], rejectUntrusted: true },
      failure('checkpoint_untrusted', 0, 5),
    ],
  ])('%s', async (_name, row, expected) => {
    expect(await verify(row)).toEqual(expected);
  });

  it('the chain built here is the one the proxy writes: its first hash is sha256 of 64 zeros and the record', () => {
    const first = SIX[0]!;
    expect(first.prevHash).toBe('0'.repeat(64));
    expect(first.hash).toBe(
      createHash('sha256')
        .update(
          '0'.repeat(64) +
            '{"agent_run_label":"table","at":"2026-01-01T00:00:00.000Z","cost_usd":1,"idempotency_key":null,' +
            '"key_id":"vk_table","method":"POST","outcome":"forwarded","path":"/v1/payment_intents","reason":null,' +
            '"seq":1,"status":200,"tainted":false,"vendor":"stripe","vendor_request_id":"req_1"}',
        )
        .digest('hex'),
    );
  });
});
