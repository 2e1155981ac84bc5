import {
  type KeyObject,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
} from 'node:crypto';
import { GENESIS_HASH, chainHash } from './chain.js';
import type { AuditRecordJson } from './record.js';
import { canonicalJson } from './canonical-json.js';
import type { AuditCheckpoint, AuditEntry, AuditHead, Store } from '../store/store.js';

/**
 * Signed chain checkpoints. The hash chain shows that no record was edited, removed or moved, but
 * not that the tail was cut off: a chain truncated at record 900 of 1,000 is a valid chain of 900.
 * A checkpoint is an Ed25519 signature over the chain head every N records or minutes; it is kept in
 * the store and written to the log, which usually leaves the machine. A verifier holding a
 * checkpoint for record 1,000 knows records 1..1,000 existed with exactly that head.
 */

/** What is signed: the canonical JSON of this object. */
function signedStatement(checkpoint: Omit<AuditCheckpoint, 'signature'>): Buffer {
  return Buffer.from(
    canonicalJson({
      type: 'keybrake.audit.checkpoint/v1',
      records: checkpoint.records,
      head: checkpoint.head,
      at: checkpoint.at,
      key_id: checkpoint.key_id,
    }),
  );
}

/** The key id of an Ed25519 public key: the first 16 hex digits of the SHA-256 of its SPKI DER. */
export function publicKeyId(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 16);
}

/** The signing half of the checkpoint key pair, with its public half and id. */
export class CheckpointSigner {
  readonly publicKey: KeyObject;
  readonly keyId: string;

  constructor(private readonly privateKey: KeyObject) {
    if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error('The audit signing key must be an Ed25519 key.');
    this.publicKey = createPublicKey(privateKey);
    this.keyId = publicKeyId(this.publicKey);
  }

  /** Parses a PKCS#8 PEM private key. */
  static fromPem(pem: string): CheckpointSigner {
    return new CheckpointSigner(createPrivateKey(pem));
  }

  /** A fresh key pair, as PKCS#8 PEM. */
  static generatePem(): string {
    return generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  }

  publicKeyPem(): string {
    return this.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  sign(head: AuditHead, at: string): AuditCheckpoint {
    const unsigned = { records: head.records, head: head.head, at, key_id: this.keyId };
    return { ...unsigned, signature: sign(null, signedStatement(unsigned), this.privateKey).toString('base64') };
  }
}

/** Public keys a verifier trusts, by key id. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/** Parses SPKI PEM public keys into a trusted-key map. */
export function trustedKeys(pems: readonly string[]): TrustedKeys {
  return new Map(
    pems.map((pem) => {
      const key = createPublicKey(pem);
      if (key.asymmetricKeyType !== 'ed25519') throw new Error('A checkpoint public key must be an Ed25519 key.');
      return [publicKeyId(key), key];
    }),
  );
}

/** True when the checkpoint is well formed and signed by the key its `key_id` names. */
export function checkpointSignatureValid(checkpoint: AuditCheckpoint, publicKey: KeyObject): boolean {
  try {
    return verify(null, signedStatement(checkpoint), publicKey, Buffer.from(checkpoint.signature, 'base64'));
  } catch {
    return false;
  }
}

/**
 * The checkpoint a parsed JSON object holds (a stored, exported, logged or archived checkpoint's
 * fields, other fields ignored), or `undefined` when a field is missing or of another type.
 */
export function checkpointOf(value: Record<string, unknown>): AuditCheckpoint | undefined {
  const wellFormed =
    typeof value.records === 'number' &&
    typeof value.head === 'string' &&
    typeof value.at === 'string' &&
    typeof value.key_id === 'string' &&
    typeof value.signature === 'string';
  if (!wellFormed) return undefined;
  return {
    records: value.records as number,
    head: value.head as string,
    at: value.at as string,
    key_id: value.key_id as string,
    signature: value.signature as string,
  };
}

/** Why a chain failed verification. */
export type AuditFailureReason =
  /** A record, its seq, its order or a hash does not chain. */
  | 'chain_broken'
  /** Records a signed checkpoint (or the stored head) vouches for are missing from the end. */
  | 'truncated'
  /** The chain is internally consistent but differs from what a signed checkpoint vouches for: rewritten. */
  | 'checkpoint_mismatch'
  /** A checkpoint claims a trusted key but its signature does not verify: forged or edited. */
  | 'checkpoint_signature_invalid'
  /** A checkpoint signed by a key the verifier does not trust, where it pinned its keys. */
  | 'checkpoint_untrusted'
  /**
   * The chain verifies, but the store holds records that are not in it (written, never sealed):
   * `firstBadSeq` is the seq the first of them should have had, the one after the chain's end.
   */
  | 'records_missing';

export type AuditVerification =
  | {
      readonly ok: true;
      readonly records: number;
      readonly head: string;
      /** Checkpoints whose signature verified and whose head matched. */
      readonly checkpoints: number;
      /** Records covered by the newest verified checkpoint (0: none). */
      readonly lastCheckpointRecords: number;
      /** Checkpoints signed by a key this verifier does not trust, not used. */
      readonly untrustedCheckpoints: number;
    }
  | {
      readonly ok: false;
      readonly records: number;
      readonly firstBadSeq: number;
      readonly reason: AuditFailureReason;
      /** With `records_missing`: how many records the store holds outside the chain. */
      readonly missingRecords?: number;
    };

/** A verification as `GET /audit/verify` and `keybrake audit verify-export` print it. */
export function verificationJson(result: AuditVerification): Record<string, unknown> {
  return result.ok
    ? {
        ok: true,
        records: result.records,
        head: result.head,
        checkpoints: result.checkpoints,
        last_checkpoint_records: result.lastCheckpointRecords,
        untrusted_checkpoints: result.untrustedCheckpoints,
      }
    : {
        ok: false,
        records: result.records,
        first_bad_seq: result.firstBadSeq,
        reason: result.reason,
        ...(result.missingRecords === undefined ? {} : { missing_records: result.missingRecords }),
      };
}

/** One sealed record as read back: `record` is the parsed record, or `undefined` if unreadable. */
export interface ChainEntry {
  readonly seq: number;
  readonly record: AuditRecordJson | undefined;
  readonly prevHash: string;
  readonly hash: string;
}

/** What {@link verifyAuditChain} checks. */
export interface ChainToVerify {
  /** The head the store claims, read before `entries`: records beyond it are not checked. */
  readonly head: AuditHead | undefined;
  readonly entries: AsyncIterable<ChainEntry>;
  readonly checkpoints: readonly AuditCheckpoint[];
  readonly trusted: TrustedKeys;
  /**
   * A checkpoint by a key not trusted is a failure (an auditor who pinned the proxy's key), not
   * merely left out (a replica that sees its siblings' own keys).
   */
  readonly rejectUntrusted?: boolean;
  /**
   * Where the chain continues from: the archive's last record and its hash (issue 23), when the
   * records before it are no longer in the store. Checkpoints at or before it are not checked here.
   * @default genesis: 0 records, 64 zeros
   */
  readonly start?: AuditHead;
}

/**
 * Recomputes the chain and holds it against every trusted checkpoint: the same function runs in
 * the server (`GET /audit/verify`) and offline on an export (`keybrake audit verify-export`).
 */
export async function verifyAuditChain(chain: ChainToVerify): Promise<AuditVerification> {
  const verified: AuditCheckpoint[] = [];
  let untrustedCheckpoints = 0;
  const start = chain.start ?? { records: 0, head: GENESIS_HASH };
  for (const checkpoint of chain.checkpoints) {
    if (checkpoint.records <= start.records) continue;
    const key = chain.trusted.get(checkpoint.key_id);
    if (!key) {
      if (chain.rejectUntrusted) {
        return { ok: false, records: 0, firstBadSeq: checkpoint.records, reason: 'checkpoint_untrusted' };
      }
      untrustedCheckpoints += 1;
      continue;
    }
    if (!checkpointSignatureValid(checkpoint, key)) {
      return { ok: false, records: 0, firstBadSeq: checkpoint.records, reason: 'checkpoint_signature_invalid' };
    }
    verified.push(checkpoint);
  }
  verified.sort((a, b) => a.records - b.records);

  const limit = chain.head?.records ?? Number.POSITIVE_INFINITY;
  let prevHash = start.head;
  let records = start.records;
  let next = 0; // index of the next checkpoint to meet
  let lastCheckpointRecords = start.records;
  for await (const entry of chain.entries) {
    if (records >= limit) break;
    const seq = records + 1;
    const bad =
      entry.seq !== seq ||
      entry.record?.seq !== seq ||
      entry.prevHash !== prevHash ||
      chainHash(prevHash, entry.record) !== entry.hash;
    if (bad) return { ok: false, records, firstBadSeq: seq, reason: 'chain_broken' };
    prevHash = entry.hash;
    records = seq;
    for (; next < verified.length && (verified[next] as AuditCheckpoint).records <= records; next += 1) {
      const checkpoint = verified[next] as AuditCheckpoint;
      if (checkpoint.records === records && checkpoint.head !== prevHash) {
        // Re-chained after the last checkpoint that still matches: the rewrite starts after it.
        return { ok: false, records, firstBadSeq: lastCheckpointRecords + 1, reason: 'checkpoint_mismatch' };
      }
      lastCheckpointRecords = checkpoint.records;
    }
  }
  if (next < verified.length || (chain.head !== undefined && records < chain.head.records)) {
    return { ok: false, records, firstBadSeq: records + 1, reason: 'truncated' };
  }
  if (chain.head !== undefined && records > 0 && chain.head.head !== prevHash) {
    return { ok: false, records, firstBadSeq: records, reason: 'chain_broken' };
  }
  return {
    ok: true,
    records,
    head: prevHash,
    checkpoints: verified.length,
    lastCheckpointRecords,
    untrustedCheckpoints,
  };
}

/** Parses a stored record's JSON text; `undefined` when it is not JSON (verification then fails). */
export function parseStoredRecord(text: string): AuditRecordJson | undefined {
  try {
    return JSON.parse(text) as AuditRecordJson;
  } catch {
    return undefined;
  }
}

/** The sealed records of a store up to `records`, as stored, a page at a time. */
export async function* storedAuditPages(store: Store, records: number, pageSize = 1000): AsyncGenerator<AuditEntry[]> {
  for (let after = 0; after < records;) {
    const page = await store.readAudit(after, Math.min(pageSize, records - after));
    if (page.length === 0) return;
    yield page;
    after += page.length;
  }
}

/** Every sealed record of a store up to `records`, parsed for verification. */
export async function* storeEntries(store: Store, records: number): AsyncGenerator<ChainEntry> {
  for await (const page of storedAuditPages(store, records)) {
    for (const entry of page) yield { ...entry, record: parseStoredRecord(entry.record) };
  }
}

/**
 * A store's checkpoints and chain head, read in that order: every checkpoint is then at or below
 * the head, so records added meanwhile never look like a cut tail.
 */
export async function auditSnapshot(store: Store): Promise<{ checkpoints: AuditCheckpoint[]; head: AuditHead }> {
  const checkpoints = await store.listCheckpoints();
  return { checkpoints, head: await store.completeAuditHead() };
}

/**
 * Verifies a store's chain against its checkpoints, trusting the given keys, and that the store
 * holds no record outside the chain. Regression: issue 16 (records written but never sealed left
 * `verify` saying `ok` over a chain that omitted them).
 */
export async function verifyStore(store: Store, trusted: TrustedKeys): Promise<AuditVerification> {
  // Counted first: it seals everything written so far, and the head read after it covers them.
  const missing = await store.auditMissing();
  const { checkpoints, head } = await auditSnapshot(store);
  const result = await verifyAuditChain({ head, entries: storeEntries(store, head.records), checkpoints, trusted });
  if (!result.ok || missing === 0) return result;
  return {
    ok: false,
    records: result.records,
    firstBadSeq: result.records + 1,
    reason: 'records_missing',
    missingRecords: missing,
  };
}

/** Options of {@link AuditCheckpointer}. */
export interface CheckpointerOptions {
  /** Sign once this many records were added since the last checkpoint. */
  readonly everyRecords: number;
  /** Sign when this long has passed since the last checkpoint and records were added. */
  readonly everyMs: number;
  readonly now: () => number;
  /** Called with each new checkpoint (the server logs it, so a copy leaves the machine). */
  readonly onCheckpoint: (checkpoint: AuditCheckpoint) => void;
}

/**
 * Signs the chain head every N records or every interval, whichever comes first, and once more on
 * close. Replicas sharing a store may sign the same head: the store keeps one checkpoint per head.
 */
export class AuditCheckpointer {
  private timer: NodeJS.Timeout | undefined;
  private last: { records: number; at: number } | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly signer: CheckpointSigner,
    private readonly options: CheckpointerOptions,
  ) {}

  start(): void {
    const tickMs = Math.min(1000, this.options.everyMs);
    this.timer = setInterval(() => void this.checkpoint(false).catch(() => undefined), tickMs);
    this.timer.unref();
  }

  /** Stops the timer and signs whatever was added since the last checkpoint. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.checkpoint(true).catch(() => undefined);
  }

  /** Signs the head now if it is due (or, with `force`, if anything was added). Never overlaps itself. */
  checkpoint(force: boolean): Promise<void> {
    this.running = this.running.catch(() => undefined).then(() => this.run(force));
    return this.running;
  }

  private async run(force: boolean): Promise<void> {
    const now = this.options.now();
    if (!this.last) {
      const newest = (await this.store.listCheckpoints()).reduce((a, b) => (b.records > a ? b.records : a), 0);
      this.last = { records: newest, at: now };
    }
    const head = await this.store.auditHead();
    const added = head.records - this.last.records;
    if (added <= 0) return;
    if (!force && added < this.options.everyRecords && now - this.last.at < this.options.everyMs) return;
    const checkpoint = this.signer.sign(head, new Date(now).toISOString());
    await this.store.addCheckpoint(checkpoint);
    this.last = { records: head.records, at: now };
    this.options.onCheckpoint(checkpoint);
  }
}
