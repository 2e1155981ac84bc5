import type { AuditInput, AuditRecordJson, PendingAudit } from '../audit/record.js';
import { KeybrakeError, StoreUnavailableError } from '../errors.js';
import type { Micros } from '../pricing/money.js';
import type { KeyIdentity } from './key-identity.js';
import type { KeyLimits, LimitRoom } from './key-limits.js';
import type { KeyListPage, KeyListQuery } from './key-listing.js';

export type { AuditInput, CallOutcome, PendingAudit } from '../audit/record.js';
export type { KeyIdentity } from './key-identity.js';

/** How long both stores keep a response for idempotent replay: the contract's minimum, 24 hours. */
export const DEFAULT_IDEMPOTENCY_RETENTION_MS = 24 * 60 * 60 * 1000;

/** A vault key as stored. The vault key itself is never stored, only its SHA-256. */
export interface VaultKeyRecord {
  readonly keyId: string;
  readonly keyHash: string;
  readonly vendor: string;
  readonly dailyCapMicros: Micros | null;
  readonly capMicros: Micros | null;
  /** Canonical `"METHOD /path"` entries. */
  readonly allowedEndpoints: readonly string[];
  readonly agentRunLabel: string | null;
  readonly parentKeyId: string | null;
  readonly tainted: boolean;
  /** Epoch milliseconds. */
  readonly createdAt: number;
  readonly expiresAt: number;
  readonly revokedAt: number | null;
  /**
   * Threshold alerts (issue 26): fractions of each cap, `0 < x <= 1`, ascending. Written by
   * `createKey`; the records other methods return leave it out (read it with `keyAlerts`).
   * @default none
   */
  readonly alertFractions?: readonly number[];
  /** Request and concurrency limits (issue 26); absent or null: none. Immutable, like the caps. */
  readonly limits?: KeyLimits | null;
  /** Issue 25: the workload identity it was issued to; absent or null: issued with an issuer key. */
  readonly identity?: KeyIdentity | null;
}

/** A vault key with its spend. Spend of a key includes the spend of its children. */
export interface VaultKeyState extends VaultKeyRecord {
  /** Settled spend plus spend whose outcome is unknown, over the key's life. */
  readonly spentMicros: Micros;
  /** Reservations of calls in flight. */
  readonly reservedMicros: Micros;
  /** Part of `spentMicros` whose outcome is unknown (timeouts, crashed calls). */
  readonly unknownMicros: Micros;
  /** Spend and reservations of the given UTC day. */
  readonly spentTodayMicros: Micros;
  readonly reservedTodayMicros: Micros;
  /** Calls in flight counted against the key's `max_concurrent` (issue 26); 0 without that limit. */
  readonly inFlight?: number;
}

/** A vendor response kept for idempotent replay. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Base64 of the body bytes as the client received them. */
  readonly body: string;
  readonly vendorRequestId: string | null;
}

/** What happened to a key, as the live feed tells it (issue 22). */
export type KeyChangeKind = 'issued' | 'revoked' | 'tainted';

/** One entry of a store's key change log. */
export interface KeyChange {
  readonly keyId: string;
  readonly change: KeyChangeKind;
  /** Epoch ms. */
  readonly at: number;
  /** Opaque: where the log stands after this change. */
  readonly position: string;
}

/** A read of the key change log: the changes, and the position to read on from. */
export interface KeyChangesRead {
  readonly changes: readonly KeyChange[];
  /** Opaque: pass it back to read what follows. */
  readonly position: string;
}

/** Input of {@link Store.reserve}. */
export interface ReserveInput {
  readonly keyId: string;
  /** Fresh id of this reservation. */
  readonly reservationId: string;
  readonly costMicros: Micros;
  /** Epoch milliseconds; the UTC day of the daily cap is derived from it. */
  readonly now: number;
  readonly idempotency: { readonly key: string; readonly fingerprint: string } | null;
  /** The endpoint moves money: refuse it if the key or an ancestor is tainted. */
  readonly sensitive: boolean;
  /** What to audit if this reservation is found orphaned (its process died mid-call). */
  readonly pending: PendingAudit;
}

/** Result of {@link Store.reserve}. */
export type ReserveOutput =
  /** `tainted`: the key or an ancestor is tainted, as read inside the reservation. */
  | {
      readonly kind: 'reserved';
      readonly tainted: boolean;
      /** What is left after this reservation, for the remaining-room headers (issue 26). */
      readonly room?: ReserveRoom;
    }
  | { readonly kind: 'replay'; readonly response: StoredResponse }
  | {
      readonly kind: 'refused';
      readonly code: ReserveRefusalCode;
      /** The key whose cap was hit (the key itself or an ancestor). */
      readonly capKeyId?: string;
      /** `rate_limited`, `concurrency_limited`: whole seconds to wait, at least 1 (issue 26). */
      readonly retryAfterS?: number;
    };

/** Room left after a reservation: USD against the tightest cap (own or any ancestor's), and the limits'. */
export interface ReserveRoom extends LimitRoom {
  /** Micro-dollars left under the tightest cap after this call's reservation, at least 0. */
  readonly remainingMicros: Micros;
}

/**
 * Why `reserve` refused, in the order both stores check (see {@link Store.reserve}): when several
 * apply, the first one checked is the answer.
 */
export type ReserveRefusalCode =
  | 'invalid_vault_key'
  /** A chain longer than `MAX_KEY_DEPTH` allows (written before the limit): not every cap could be checked. */
  | 'key_depth_exceeded'
  | 'vault_key_revoked'
  | 'vault_key_expired'
  | 'tainted_request_refused'
  | 'idempotency_key_reused'
  | 'idempotency_key_in_use'
  | 'cap_exhausted'
  | 'rate_limited'
  | 'concurrency_limited';

/** Input of {@link Store.settle}. */
export interface SettleInput {
  readonly keyId: string;
  readonly reservationId: string;
  /** The real cost; for an unknown outcome pass the reserved amount. */
  readonly actualMicros: Micros;
  /** For an idempotent call: the response to keep for replay, or `null` to release the claim. */
  readonly idempotentResponse: StoredResponse | null;
  readonly audit: AuditInput;
  /**
   * Vendor objects the answer created (a PaymentIntent), recorded as {@link Store.recordObject}
   * does, in the same step as the settlement: one write instead of two. Recorded only by the
   * settlement that settles the reservation, so a retried one never puts back a state that a later
   * call has changed.
   * @default none
   */
  readonly objects?: readonly SettledObject[];
}

/** A vendor object recorded with a settlement ({@link SettleInput.objects}). */
export interface SettledObject {
  readonly objectId: string;
  readonly state: VendorObjectState;
}

/** One sealed audit record as stored: the record's JSON text and its chain fields. */
export interface AuditEntry {
  readonly seq: number;
  /** The record as stored (canonical JSON when untouched). */
  readonly record: string;
  readonly prevHash: string;
  readonly hash: string;
}

/** The end of the audit chain: how many records it has and the last hash (64 zeros when empty). */
export interface AuditHead {
  readonly records: number;
  readonly head: string;
}

/** An Ed25519 signature over the chain head, as stored, logged, exported and served. */
export interface AuditCheckpoint {
  readonly records: number;
  readonly head: string;
  /** ISO-8601 time of signing. */
  readonly at: string;
  /** Id of the signing key (see `publicKeyId`). */
  readonly key_id: string;
  /** Base64 Ed25519 signature of the checkpoint statement. */
  readonly signature: string;
}

/**
 * How far the audit chain has been archived (issue 23): records `1..archivedThrough` are in the
 * archive's segments and may be gone from the live store.
 */
export interface ArchiveState {
  /** The last archived seq; 0 before any archive. */
  readonly archivedThrough: number;
  /** The hash of record `archivedThrough`; 64 zeros before any archive. */
  readonly archivedHead: string;
  /** Segments recorded so far. */
  readonly segments: number;
  /**
   * Records `1..trimmedThrough` are gone from the live store (at most `archivedThrough`: the trim
   * follows the archive, a slice at a time).
   */
  readonly trimmedThrough: number;
}

/** Input of {@link Store.acquireArchiveLease}. */
export interface ArchiveLeaseInput {
  /** Who asks: a fresh id per archiver (replica and start). */
  readonly holder: string;
  /** How long the lease lasts unless renewed, ms. */
  readonly ttlMs: number;
}

/** Input of {@link Store.recordArchivedSegment}: the segment `firstSeq..lastSeq` is in the sink. */
export interface ArchivedSegmentInput {
  readonly holder: string;
  readonly firstSeq: number;
  readonly lastSeq: number;
  /** The hash of record `firstSeq - 1` (64 zeros for the first segment): `archivedHead` as it must stand. */
  readonly prevHash: string;
  /** The hash of record `lastSeq`. */
  readonly head: string;
}

/** Input of {@link Store.purgeExpired} (issue 23). */
export interface ExpiryPurgeInput {
  /** Epoch ms. */
  readonly now: number;
  /** A family goes once its root key expired this long ago (its children expire no later), ms. */
  readonly keyRetentionMs: number;
  /** Most families removed by this call: the rest wait for the next. */
  readonly limit: number;
}

/** What one {@link Store.purgeExpired} removed, by kind. */
export interface ExpiryPurgeOutput {
  /** Vault keys removed (every key of each family removed). */
  readonly keys: number;
  /** Families removed (a root key and its descendants). */
  readonly families: number;
  /** Per-day spend rows of removed keys (the lifetime spend goes with the key itself). */
  readonly spendDays: number;
  /** Kept idempotent responses removed: past their retention, or of removed keys. */
  readonly idempotentResponses: number;
  /** Alerts of removed keys (delivered or failed: a family with a pending alert is kept). */
  readonly alerts: number;
  /** Tracked vendor objects of removed families. */
  readonly vendorObjects: number;
  /** Families past their retention kept for now: a call in flight, a pending alert or live audit records. */
  readonly kept: number;
  /** True when `limit` was reached: more may be due. */
  readonly more: boolean;
}

/**
 * Everything the proxy keeps, behind one interface so the embedded store and the Redis store are
 * interchangeable and pass the same test suite. Every method is atomic on its own; `reserve` and
 * `settle` are the two calls on a proxied request's hot path.
 *
 * Errors, the same on every store (see {@link toStoreError}): a `KeybrakeError` raised inside an
 * operation (a refusal of the request itself, such as a parent key revoked meanwhile) reaches the
 * caller as it is; any other failure (storage unreachable, full, corrupt) is a
 * `StoreUnavailableError` (503), and callers forward nothing. When a write's commit itself fails
 * (the embedded store commits a turn's writes together), every write of it is unavailable,
 * refusals included: a refusal may rest on a write that was rolled back.
 */
export interface Store {
  /**
   * Stores a new key and returns it as stored. A child is checked against its parent in the same
   * atomic step as the insert, so a parent revoked or tainted concurrently (on any replica) is
   * never missed: the parent must exist, be neither revoked nor expired at `createdAt`, and have
   * fewer than `MAX_KEY_DEPTH` ancestors; the child inherits the parent's taint as it is then.
   * Checked in this order: the parent exists, it is active, its ancestry leaves room for a child.
   * Throws `InvalidRequestError` (parent missing or inactive) or `KeyDepthExceededError`; see
   * `key-family.ts`.
   */
  createKey(record: VaultKeyRecord): Promise<VaultKeyRecord>;
  /**
   * Looks a key up by the SHA-256 of its vault key. A store may serve this from a local cache:
   * the immutable fields are exact, but `revokedAt` and `tainted` may lag behind (only ever
   * towards "active, untainted", as both are one-way). `reserve` re-checks them atomically, and
   * a refusal based on this record should be confirmed with `getKey`.
   */
  findKeyByHash(keyHash: string): Promise<VaultKeyRecord | undefined>;
  getKey(keyId: string, now: number): Promise<VaultKeyState | undefined>;
  /** Revokes a key and all its descendants. Returns false for an unknown key. Idempotent. */
  revokeKey(keyId: string, now: number): Promise<boolean>;
  /** Taints a key and all its descendants for good. Returns false for an unknown key. Idempotent. */
  taintKey(keyId: string): Promise<boolean>;
  /**
   * Atomically checks, then reserves the cost on the key and every ancestor. The checks, in this
   * order (the first that fails is the refusal; `ReserveRefusalCode` lists them in the same order):
   * 1. the key exists (`invalid_vault_key`);
   * 2. its chain is within `MAX_CHAIN_LENGTH` (`key_depth_exceeded`);
   * 3. for each key of the chain, nearest first: not revoked (`vault_key_revoked`), then not
   *    expired (`vault_key_expired`);
   * 4. a `sensitive` call when any key of the chain is tainted (`tainted_request_refused`);
   * 5. the idempotency claim: another fingerprint (`idempotency_key_reused`), a call still in
   *    flight (`idempotency_key_in_use`), or a kept response (`replay`, not a refusal);
   * 6. for each key of the chain, nearest first: its lifetime cap, then its daily cap
   *    (`cap_exhausted`, `capKeyId` naming that key);
   * 7. for each key of the chain, nearest first: its requests per second, per minute, then calls
   *    in flight (`rate_limited`, `concurrency_limited`, with `retryAfterS`; see `key-limits.ts`).
   *    Only a chain with a limit runs this step. An admitted call counts in the same write, and its
   *    in-flight count is released by its settlement (or by the recovery of its reservation).
   * The embedded store runs these steps in TypeScript, the Redis store in `lua/reserve.ts`; both
   * are numbered after this list, and `redis-issue-20-store-contract.test.ts` runs the same
   * scenarios against both and compares the answers.
   */
  reserve(input: ReserveInput): Promise<ReserveOutput>;
  /**
   * Atomically: turns the reservation into spend, keeps or releases the idempotency claim, appends
   * the audit record. Returns false, and writes nothing, when the reservation is no longer there
   * (already settled, or resolved as unknown by recovery): settling is safe to retry.
   */
  settle(input: SettleInput): Promise<boolean>;
  /** Appends one audit record (blocked and replayed calls). */
  appendAudit(input: AuditInput): Promise<void>;
  /** Audit records of one key, oldest first. */
  listCalls(keyId: string): Promise<AuditRecordJson[]>;
  /** Audit records of one key with `seq > afterSeq`, oldest first, at most `limit` (issue 22). */
  listCallsPage(keyId: string, afterSeq: number, limit: number): Promise<AuditRecordJson[]>;
  /**
   * A page of keys, filtered and sorted (issue 22; `key-listing.ts`). Brings the store's digest of
   * the audit chain up to date first, outside any proxied call.
   */
  listKeys(query: KeyListQuery): Promise<KeyListPage>;
  /**
   * Key changes (issue, revoke, taint; one per key a subtree mark changed) after `position`, oldest
   * first, at most `limit`; `null` reads from the log's end (nothing yet, and the position of now).
   * Written with the change itself, so a change made through any process or replica is read here.
   */
  readKeyChanges(position: string | null, limit: number): Promise<KeyChangesRead>;
  /** Sealed audit records with `seq > afterSeq`, oldest first, at most `limit`. */
  readAudit(afterSeq: number, limit: number): Promise<AuditEntry[]>;
  /**
   * The chain's head as it stands: cheap, for timers (the checkpointer). A store that chains
   * records some time after writing them (Redis) may not count the last moment's records yet.
   */
  auditHead(): Promise<AuditHead>;
  /**
   * The head of a chain that holds every audit record written before this call: the store first
   * chains any it has not yet. For the export and verification, which must cover everything.
   */
  completeAuditHead(): Promise<AuditHead>;
  /**
   * The chain's head as chained right now, never waiting to chain more first (issue 23: the
   * archiver, which only needs a head it may archive below, must not queue behind the sealers).
   */
  chainedAuditHead(): Promise<AuditHead>;
  /**
   * How many audit records written before this call are not in the chain once everything written
   * so far is chained. A chain must never silently omit a record: verification fails on any. A
   * store that writes each record as its chain entry, in one transaction (embedded), has none by
   * construction.
   */
  auditMissing(): Promise<number>;
  /** Keeps a signed checkpoint; a second one for the same record count is ignored. */
  addCheckpoint(checkpoint: AuditCheckpoint): Promise<void>;
  /** Every kept checkpoint, oldest first. */
  listCheckpoints(): Promise<AuditCheckpoint[]>;
  /**
   * How far the chain is archived (issue 23). After a trim `auditHead().records` still counts
   * every record ever written, `readAudit` returns only live records (`seq > archivedThrough`)
   * and `listCheckpoints` keeps every checkpoint.
   */
  archiveState(): Promise<ArchiveState>;
  /**
   * Takes the archiver's lease for `holder`, or renews it, until `ttlMs` from now; false while
   * another holder's lease runs. One archiver at a time across replicas and processes.
   */
  acquireArchiveLease(input: ArchiveLeaseInput): Promise<boolean>;
  /** Gives the lease up if `holder` still has it. */
  releaseArchiveLease(holder: string): Promise<void>;
  /**
   * Records a segment stored and read back: `archivedThrough` moves to `lastSeq`. Atomic with the
   * check that `holder` holds the lease, that the segment is the next one (`archivedThrough ==
   * firstSeq - 1`, `archivedHead == prevHash`) and that record `lastSeq` has hash `head`; false,
   * and nothing written, otherwise.
   */
  recordArchivedSegment(input: ArchivedSegmentInput): Promise<boolean>;
  /**
   * Removes up to `limit` of the oldest live records with `seq <= archivedThrough` (never the
   * chain's last one, which the next record is chained to) with whatever indexes them per key,
   * if `holder` holds the lease. Returns how many were removed (0: none left, or no lease).
   */
  trimArchivedAudit(holder: string, limit: number): Promise<number>;
  /**
   * Removes what has expired (issue 23), in slices that never hold calls back for long: every
   * family whose root key expired more than `keyRetentionMs` ago (a child never outlives its
   * parent, so the whole family has expired), with its keys, spend, limit counters, alerts,
   * tracked objects and indexes; and the kept idempotent responses past the store's retention.
   * A family is kept, and counted in `kept`, while a reservation of it is in flight, an alert of
   * it is still pending, or any of its audit records is live (not yet archived and trimmed): what
   * `GET /vault/keys/{id}/calls` answers stays whole. Audit records themselves are never removed
   * here (the archive's trim does that). Safe to run on several replicas at once (each family's
   * checks and removal are one atomic step); the proxy runs it under the archiver's lease.
   */
  purgeExpired(input: ExpiryPurgeInput): Promise<ExpiryPurgeOutput>;
  /** Resolves when the store is reachable. */
  ping(): Promise<void>;
  close(): Promise<void>;
  /**
   * Claims a vendor object (a Stripe PaymentIntent) of the key's family for one call and returns
   * its tracked state, so that no two calls that change or move its amount are in flight at once;
   * `busy` while another call holds it (until released, or until its `until` passes).
   */
  claimObject(input: ObjectClaimInput): Promise<ObjectClaimOutput>;
  /** Releases a claim this call holds, after keeping, replacing or forgetting the object's state. */
  releaseObject(input: ObjectReleaseInput): Promise<void>;
  /** Records the state of an object a vendor's answer showed (one the proxy just created). */
  recordObject(input: ObjectRecordInput): Promise<void>;
  /**
   * A key's alert thresholds and every alert it fired, with its delivery state (issue 26). Alerts
   * are fired by the stores themselves: a threshold inside `settle` (and the recovery or sweep of
   * an orphaned reservation), a cap hit inside (embedded) or right after (Redis) the `reserve`
   * that refused; each is appended to the store's outbox at most once per key, cap period and
   * threshold (`alertId`), whichever replica or process fires it.
   */
  keyAlerts(keyId: string): Promise<KeyAlerts>;
  /**
   * Leases up to `limit` pending alerts due at `now` to this sender for `leaseMs` and counts one
   * attempt on each: no other sender takes them until the lease lapses (its sender died). Also
   * returns how many alerts are pending, by type.
   */
  claimAlerts(input: AlertClaimInput): Promise<AlertClaimOutput>;
  /** Records the outcome of one delivery attempt of a leased alert. */
  finishAlert(input: AlertFinishInput): Promise<void>;
}

/** What fired an alert (the webhook's `type`). */
export type AlertType = 'keybrake.alert.threshold' | 'keybrake.alert.cap_hit';

/** Where an alert stands in the outbox. */
export type AlertState = 'pending' | 'delivered' | 'failed';

/** One alert of the outbox, as fired and as its deliveries left it. */
export interface AlertEntry {
  /** Stable per key, cap period and threshold (`alertId`): receivers de-duplicate on it. */
  readonly id: string;
  readonly type: AlertType;
  readonly keyId: string;
  readonly agentRunLabel: string | null;
  readonly vendor: string;
  /** The key's spend on the cap when it fired (for a cap hit: settled plus reserved). */
  readonly spentMicros: Micros;
  readonly capMicros: Micros;
  readonly cap: 'lifetime' | 'daily';
  /** `lifetime`, or the UTC day (`YYYY-MM-DD`) of a daily cap. */
  readonly period: string;
  /** The threshold; null for a cap hit. */
  readonly atFraction: number | null;
  /** Epoch ms. */
  readonly createdAt: number;
  readonly state: AlertState;
  readonly attempts: number;
  /** HTTP status of the last attempt; null before any, or when it got no answer. */
  readonly lastStatus: number | null;
  /** Epoch ms before which it is not attempted again. */
  readonly nextAttemptAt: number;
}

/** Result of {@link Store.keyAlerts}. */
export interface KeyAlerts {
  readonly fractions: readonly number[];
  /** Oldest first. */
  readonly fired: readonly AlertEntry[];
}

/** Input of {@link Store.claimAlerts}. */
export interface AlertClaimInput {
  /** Epoch ms. */
  readonly now: number;
  readonly leaseMs: number;
  readonly limit: number;
}

/** Result of {@link Store.claimAlerts}. */
export interface AlertClaimOutput {
  readonly claimed: readonly AlertEntry[];
  readonly pending: Readonly<Record<AlertType, number>>;
}

/** Input of {@link Store.finishAlert}. */
export interface AlertFinishInput {
  readonly id: string;
  readonly keyId: string;
  readonly state: AlertState;
  readonly lastStatus: number | null;
  /** For a `pending` one: epoch ms of its next attempt. */
  readonly nextAttemptAt: number;
}

/**
 * What the proxy knows of a vendor object whose later calls move money, per key family: its
 * amount and currency as the vendor last answered, and the spend already booked for it.
 */
export interface VendorObjectState {
  /** In the currency's minor units. */
  readonly amount: number;
  readonly currency: string;
  /** Spend already booked for moving this object's amount. */
  readonly bookedMicros: Micros;
}

/** Input of {@link Store.claimObject}. */
export interface ObjectClaimInput {
  readonly keyId: string;
  readonly objectId: string;
  readonly claimId: string;
  /** Epoch ms. */
  readonly now: number;
  /** Epoch ms after which the claim lapses (its call died without releasing it). */
  readonly until: number;
}

/** Result of {@link Store.claimObject}; `state` is null for an object the family has not seen. */
export type ObjectClaimOutput =
  { readonly kind: 'claimed'; readonly state: VendorObjectState | null } | { readonly kind: 'busy' };

/** Input of {@link Store.releaseObject}: `state` undefined keeps it, null forgets it. */
export interface ObjectReleaseInput {
  readonly keyId: string;
  readonly objectId: string;
  readonly claimId: string;
  readonly state: VendorObjectState | null | undefined;
}

/** Input of {@link Store.recordObject}. */
export interface ObjectRecordInput {
  readonly keyId: string;
  readonly objectId: string;
  readonly state: VendorObjectState;
}

/** The UTC day (`YYYY-MM-DD`) a daily cap counts in. */
export function utcDay(epochMs: number): string {
  return new Date(epochMs).toISOString().slice(0, 10);
}

/**
 * The one rule by which every store turns a failure into the error its caller sees: a
 * `KeybrakeError` (a refusal raised inside the operation, or a store error already typed) as it
 * is; anything else as a fail-closed `StoreUnavailableError`.
 */
export function toStoreError(error: unknown): KeybrakeError {
  return error instanceof KeybrakeError ? error : new StoreUnavailableError(error);
}
