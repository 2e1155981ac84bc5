import type { AuditRecordJson } from '../audit/chain.js';
import type { Micros } from '../pricing/money.js';

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
}

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
}

/** A vendor response kept for idempotent replay. */
export interface StoredResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Base64 of the body bytes as the client received them. */
  readonly body: string;
  readonly vendorRequestId: string | null;
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
  readonly pending: Omit<AuditInput, 'at' | 'outcome' | 'reason' | 'status' | 'costMicros' | 'vendorRequestId'>;
}

/** Result of {@link Store.reserve}. */
export type ReserveOutput =
  /** `tainted`: the key or an ancestor is tainted, as read inside the reservation. */
  | { readonly kind: 'reserved'; readonly tainted: boolean }
  | { readonly kind: 'replay'; readonly response: StoredResponse }
  | {
      readonly kind: 'refused';
      readonly code:
        | 'vault_key_revoked'
        | 'vault_key_expired'
        | 'cap_exhausted'
        | 'idempotency_key_reused'
        | 'idempotency_key_in_use'
        | 'tainted_request_refused'
        | 'invalid_vault_key'
        /** A chain longer than `MAX_KEY_DEPTH` allows (written before the limit): not every cap could be checked. */
        | 'key_depth_exceeded';
      /** The key whose cap was hit (the key itself or an ancestor). */
      readonly capKeyId?: string;
    };

/** Input of {@link Store.settle}. */
export interface SettleInput {
  readonly keyId: string;
  readonly reservationId: string;
  /** The real cost; for an unknown outcome pass the reserved amount. */
  readonly actualMicros: Micros;
  /** For an idempotent call: the response to keep for replay, or `null` to release the claim. */
  readonly idempotentResponse: StoredResponse | null;
  readonly audit: AuditInput;
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
 * Everything the proxy keeps, behind one interface so the embedded store and the Redis store are
 * interchangeable and pass the same test suite. Every method is atomic on its own; `reserve` and
 * `settle` are the two calls on a proxied request's hot path.
 *
 * Implementations throw `StoreUnavailableError` when they cannot reach their storage; callers
 * forward nothing in that case.
 */
export interface Store {
  /**
   * Stores a new key and returns it as stored. A child is checked against its parent in the same
   * atomic step as the insert, so a parent revoked or tainted concurrently (on any replica) is
   * never missed: the parent must exist, be neither revoked nor expired at `createdAt`, and have
   * fewer than `MAX_KEY_DEPTH` ancestors; the child inherits the parent's taint as it is then.
   * Throws `InvalidRequestError` (parent missing or inactive) or `KeyDepthExceededError`.
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
   * Atomically: re-checks revocation and expiry of the key and its ancestors, claims the
   * idempotency key (or finds a replay or a conflict), checks the cost against every cap of the key
   * and its ancestors, and reserves it on all of them.
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
  /** Sealed audit records with `seq > afterSeq`, oldest first, at most `limit`. */
  readAudit(afterSeq: number, limit: number): Promise<AuditEntry[]>;
  /**
   * The chain's head. `sealAll`: a store that seals records into the chain later (Redis) first
   * seals every record written so far, not only those it knows are new.
   */
  auditHead(options: { readonly sealAll: boolean }): Promise<AuditHead>;
  /**
   * How many audit records written before this call are not in the chain once everything written
   * so far is sealed. A chain must never silently omit a record: verification fails on any. A
   * store that writes each record as its chain entry, in one transaction (embedded), has none by
   * construction.
   */
  auditMissing(): Promise<number>;
  /** Keeps a signed checkpoint; a second one for the same record count is ignored. */
  addCheckpoint(checkpoint: AuditCheckpoint): Promise<void>;
  /** Every kept checkpoint, oldest first. */
  listCheckpoints(): Promise<AuditCheckpoint[]>;
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
