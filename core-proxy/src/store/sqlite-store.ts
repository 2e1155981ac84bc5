import {
  closeSync,
  fdatasyncSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  statfsSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { addIdentityColumn } from './sqlite-identity.js';
import { identityOfText, identityText } from './key-identity.js';
import { GENESIS_HASH, chainEntry } from '../audit/chain.js';
import { type AuditRecordJson, auditRecordJson, interruptedAuditInput } from '../audit/record.js';
import { InvalidVaultKeyError, StoreUnavailableError } from '../errors.js';
import { MAX_CHAIN_LENGTH } from '../keys/key-depth.js';
import type { Micros } from '../pricing/money.js';
import {
  ANCESTRY_WALK_LIMIT,
  childExpiresAt,
  keyDepthExceededError,
  parentHasRoom,
  parentInactiveError,
  parentMissingError,
} from './key-family.js';
import { type KeyListPage, type KeyListQuery, catchUpDigest, listKeyPage } from './key-listing.js';
import { ALERTS_SCHEMA, SqliteAlerts } from './sqlite-alerts.js';
import { SqliteCheckpointer } from './sqlite-checkpointer.js';
import { admitCall, hasLimits, remainingUnderCaps } from './key-limits.js';
import {
  type LimitColumns,
  addLimitColumns,
  countAdmittedCall,
  limitStateOfRow,
  limitsOfRow,
  releaseInFlight,
} from './sqlite-limits.js';
import { ARCHIVE_SCHEMA, SqliteArchive } from './sqlite-archive.js';
import { EXPIRY_SCHEMA, SqliteExpiry } from './sqlite-expiry.js';
import { LISTING_SCHEMA, SqliteListing } from './sqlite-listing.js';
import { OwnerLock, ownerAlive } from './sqlite-owner.js';
import {
  DEFAULT_IDEMPOTENCY_RETENTION_MS,
  type AlertClaimInput,
  type AlertClaimOutput,
  type AlertFinishInput,
  type ArchiveLeaseInput,
  type ArchiveState,
  type ArchivedSegmentInput,
  type AuditInput,
  type ExpiryPurgeInput,
  type ExpiryPurgeOutput,
  type AuditCheckpoint,
  type KeyAlerts,
  type ObjectClaimInput,
  type ObjectClaimOutput,
  type ObjectRecordInput,
  type ObjectReleaseInput,
  type VendorObjectState,
  type AuditEntry,
  type AuditHead,
  type KeyChangesRead,
  type ReserveInput,
  type ReserveOutput,
  type SettleInput,
  type Store,
  type StoredResponse,
  type VaultKeyRecord,
  type VaultKeyState,
  toStoreError,
  utcDay,
} from './store.js';

/** Options of the embedded store. */
export interface SqliteStoreOptions {
  /** Folder of the database file; created if missing. @default './.keybrake-data' */
  readonly dataDir: string;
  /** How long kept idempotent responses live. @default DEFAULT_IDEMPOTENCY_RETENTION_MS (24h, the contract's minimum) */
  readonly idempotencyRetentionMs?: number;
  /** The clock (epoch ms) of recovery records and of kept responses' retention. @default Date.now */
  readonly now?: () => number;
}

interface KeyRow extends LimitColumns {
  /** Issue 25: JSON, or null. */
  identity: string | null;
  key_id: string;
  key_hash: string;
  vendor: string;
  daily_cap: number | null;
  cap: number | null;
  allowed_endpoints: string;
  agent_run_label: string | null;
  parent_key_id: string | null;
  tainted: number;
  created_at: number;
  expires_at: number;
  revoked_at: number | null;
  spent: number;
  reserved: number;
  unknown: number;
}

/** A key of a reservation's chain with its spend of the reservation's day. */
interface ChainRow extends KeyRow {
  day_spent: number | null;
  day_reserved: number | null;
}

interface ReservationRow {
  reservation_id: string;
  key_id: string;
  day: string;
  amount: number;
  idempotency_key: string | null;
  pending: string;
  /** The store that made it (`OwnerLock.ownerId`); null for a reservation written before owners. */
  owner: string | null;
  /** JSON ids of the keys whose in-flight count it holds (issue 26); null: none. */
  in_flight_keys: string | null;
}

/** A write queued for the next group commit. */
interface PendingWrite {
  operation: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * How long a write waits for another process's write lock before it fails closed (503), like the
 * busy timeout this replaces; the wait never blocks the event loop (see `commitPendingWrites`).
 */
const WRITE_LOCK_WAIT_MS = 5000;

/**
 * SQLite's own checkpoint, left as a backstop: the commit that takes the WAL past this many pages
 * checkpoints inside the call. The checkpointer thread keeps the WAL well under it.
 */
const WAL_AUTOCHECKPOINT_PAGES = 4000;

/**
 * The WAL's size at open, in pages: past the backstop. After each checkpoint SQLite writes the WAL
 * again from its start, so a WAL this long is never extended while it runs. A commit that extends
 * the file makes its fsync also commit the file's new size (a filesystem journal commit): measured
 * here at 2 to 10 times a fsync that only overwrites (issue 21).
 */
const WAL_PRESIZE_PAGES = 4200;

/**
 * How often the checkpointer thread looks at the WAL: often enough that the WAL stays well under
 * the backstop at this machine's peak of about 3,000 commits of 4 pages a second (2,400 pages per
 * interval).
 */
const CHECKPOINT_INTERVAL_MS = 200;

/**
 * The WAL length (pages) from which the checkpointer thread folds it back into the database file.
 * Each fold costs the writer: the commits that run during it wait longer for their fsync, and the
 * next commit restarts the WAL from its start and syncs the new WAL header first (one more fsync).
 * Measured with `bench/dist/tail.js` (issue 21), commits during a fold took 1.6 to 12 times the
 * others' and those that restarted the WAL 6 to 44 times (the checkpointer thread now restarts
 * it itself, see `SqliteCheckpointer`): a fold every 200 ms whatever the rate was five a second.
 * Waiting for this many pages makes it about one a second at 500 calls a second, and still one
 * per interval at the peak.
 */
const CHECKPOINT_MIN_PAGES = 1000;

/**
 * Rows of the idempotency table one write of the purge looks at (see `purgeKeptResponses`): about
 * a millisecond of the event loop each.
 */
const PURGE_SLICE_ROWS = 500;

/** Where a purge of kept responses has got to: the last row it looked at, in key order. */
interface IdempotencyPosition {
  readonly keyId: string;
  readonly idempotencyKey: string;
}

/** Keys remembered in memory at most; past it the cache starts over (a bound, not an LRU). */
const CACHED_KEYS = 10_000;

/** The key and its ancestors, nearest first (at most `?` of them), each with its spend of one day. */
const CHAIN_SQL = `
WITH RECURSIVE chain(key_id, depth) AS (
  SELECT ?, 0
  UNION ALL
  SELECT k.parent_key_id, c.depth + 1 FROM chain c JOIN vault_keys k ON k.key_id = c.key_id
   WHERE k.parent_key_id IS NOT NULL AND c.depth + 1 < ?)
SELECT k.*, d.spent AS day_spent, d.reserved AS day_reserved
  FROM chain c JOIN vault_keys k ON k.key_id = c.key_id
  LEFT JOIN daily_spend d ON d.key_id = k.key_id AND d.day = ?
 ORDER BY c.depth`;

/** `CHAIN_SQL` for a key that has no parent: the key with its spend of one day (`?` the day, then the key). */
const ROOT_KEY_SQL = `
SELECT k.*, d.spent AS day_spent, d.reserved AS day_reserved
  FROM vault_keys k LEFT JOIN daily_spend d ON d.key_id = k.key_id AND d.day = ?
 WHERE k.key_id = ?`;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS vault_keys (
  key_id TEXT PRIMARY KEY,
  key_hash TEXT NOT NULL UNIQUE,
  vendor TEXT NOT NULL,
  daily_cap INTEGER,
  cap INTEGER,
  allowed_endpoints TEXT NOT NULL,
  agent_run_label TEXT,
  parent_key_id TEXT REFERENCES vault_keys(key_id),
  tainted INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER,
  spent INTEGER NOT NULL DEFAULT 0,
  reserved INTEGER NOT NULL DEFAULT 0,
  unknown INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS vault_keys_parent ON vault_keys(parent_key_id);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  key_id TEXT,
  record TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_key ON audit(key_id, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
  records INTEGER PRIMARY KEY,
  checkpoint TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_generation (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  generation INTEGER NOT NULL
);
INSERT OR IGNORE INTO key_generation (id, generation) VALUES (0, 0);
CREATE TABLE IF NOT EXISTS wal_restart (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  at INTEGER NOT NULL
);
`;

/**
 * Tables looked up by their primary key only, kept `WITHOUT ROWID`: one b-tree each instead of a
 * rowid table plus the index of its key, so a write dirties one page instead of two (issue 21:
 * every dirty page is one more 4 KiB WAL frame in the commit's fsync). `{name}` is the table's
 * name; a file written before this is converted at open (`withoutRowid`).
 */
const KEYED_TABLES: readonly { readonly name: string; readonly columns: string; readonly sql: string }[] = [
  {
    name: 'daily_spend',
    columns: 'key_id, day, spent, reserved',
    sql: `CREATE TABLE IF NOT EXISTS {name} (
  key_id TEXT NOT NULL,
  day TEXT NOT NULL,
  spent INTEGER NOT NULL DEFAULT 0,
  reserved INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, day)
) WITHOUT ROWID`,
  },
  {
    name: 'reservations',
    columns: 'reservation_id, key_id, day, amount, idempotency_key, pending, owner',
    sql: `CREATE TABLE IF NOT EXISTS {name} (
  reservation_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  day TEXT NOT NULL,
  amount INTEGER NOT NULL,
  idempotency_key TEXT,
  pending TEXT NOT NULL,
  owner TEXT
) WITHOUT ROWID`,
  },
  {
    // Tracked vendor objects (issue 17), per key family (its root key). Issue 21: a settlement
    // that records the PaymentIntent its answer created wrote 7.6 WAL frames, one of them this
    // table's index of its key beside the table itself.
    name: 'vendor_objects',
    columns: 'family, object_id, amount, currency, booked, claim_id, claim_until',
    sql: `CREATE TABLE IF NOT EXISTS {name} (
  family TEXT NOT NULL,
  object_id TEXT NOT NULL,
  amount INTEGER,
  currency TEXT,
  booked INTEGER NOT NULL DEFAULT 0,
  claim_id TEXT,
  claim_until INTEGER,
  PRIMARY KEY (family, object_id)
) WITHOUT ROWID`,
  },
  {
    name: 'idempotency',
    columns: 'key_id, idempotency_key, fingerprint, response, created_at',
    sql: `CREATE TABLE IF NOT EXISTS {name} (
  key_id TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  response TEXT,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, idempotency_key)
) WITHOUT ROWID`,
  },
];

/**
 * The embedded durable store: one SQLite file in WAL mode with `synchronous=FULL`, so every
 * committed reservation, settlement and audit record survives a crash or power loss before the
 * response goes out. better-sqlite3 is synchronous, so nothing of this process interleaves inside
 * a transaction; other processes may open the same data directory (`keybrake serve --workers N`):
 * every write takes SQLite's write lock first (`BEGIN IMMEDIATE`), and everything a decision rests
 * on is read inside that transaction.
 *
 * Writes are group-committed: those issued in the same turn of the event loop run in arrival
 * order inside one transaction, and all resolve after its single commit (one fsync instead of one
 * per write). A write's promise still resolves only once it is durable, and one write's failure
 * undoes none of the others: the batch then runs again, each write in its own savepoint.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  private readonly dataDir: string;
  private readonly retentionMs: number;
  private readonly now: () => number;
  private readonly purgeTimer: NodeJS.Timeout;
  private readonly recoveryTimer: NodeJS.Timeout;
  private readonly owner: OwnerLock;
  private readonly checkpointer: SqliteCheckpointer;
  private readonly statements = new Map<string, Database.Statement>();
  private pendingWrites: PendingWrite[] = [];
  private commitScheduled = false;
  private closing = false;
  /** The purge of kept responses in progress, if any (see `purgeKeptResponses`). */
  private purging: Promise<void> | undefined;
  /** Kept responses the purge has removed so far, for `purgeExpired`'s count. */
  private purgedResponses = 0;
  private lockWaitTimer: NodeJS.Timeout | undefined;
  /** When the current batch first found the write lock taken (0: it has not). */
  private lockWaitSince = 0;
  /** The next batch runs each write in its own savepoint: the last attempt had a write throw. */
  private isolateWrites = false;
  /**
   * `PRAGMA data_version` as of this connection's last transaction: it changes exactly when
   * another connection commits, so while it stands still everything cached below is current.
   */
  private dataVersion = -1;
  /** The chain's last record as this connection last wrote or read it; null: read it. */
  private auditTail: { seq: number; hash: string } | null = null;
  /**
   * Key records by vault key hash, as of `keyGeneration`: revocation and taint (the only fields
   * that ever change) bump the generation in their own transaction, on any process.
   */
  private readonly keysByHash = new Map<string, VaultKeyRecord>();
  private keyGeneration = -1;
  /** Ancestor ids by key id, nearest first: parent links never change once written. */
  private readonly ancestorIds = new Map<string, readonly string[]>();
  /** The console's listing, change log and call pages (issue 22). */
  private readonly listing = new SqliteListing({
    statement: (sql) => this.statement(sql),
    write: (operation) => this.write(operation),
    run: (operation) => this.run(operation),
  });
  /** The digest catch-up in flight: concurrent listings share it. */
  private digestRun: Promise<void> | null = null;
  /** Threshold and cap-hit alerts and their outbox (issue 26). */
  private readonly alerts = new SqliteAlerts({
    statement: (sql) => this.statement(sql),
    now: () => this.now(),
  });
  /** The audit archive's state, lease and trim (issue 23). */
  private readonly archive = new SqliteArchive({
    statement: (sql) => this.statement(sql),
    write: (operation) => this.write(operation),
    run: (operation) => this.run(operation),
    now: () => this.now(),
  });
  /** The removal of expired families (issue 23). */
  private readonly expiry = new SqliteExpiry({
    statement: (sql) => this.statement(sql),
    write: (operation) => this.write(operation),
  });

  constructor(options: SqliteStoreOptions) {
    mkdirSync(options.dataDir, { recursive: true });
    this.dataDir = options.dataDir;
    // Opening waits for other processes (schema, recovery); afterwards no call blocks on them.
    this.db = new Database(join(options.dataDir, 'keybrake.sqlite3'), { timeout: WRITE_LOCK_WAIT_MS });
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    this.db.pragma('foreign_keys = ON');
    this.db
      .transaction(() => {
        this.db.exec(SCHEMA);
        for (const table of KEYED_TABLES) this.withoutRowid(table);
        addLimitColumns(this.db);
        addIdentityColumn(this.db);
        this.db.exec(LISTING_SCHEMA);
        this.db.exec(ALERTS_SCHEMA);
        this.db.exec(ARCHIVE_SCHEMA);
        this.db.exec(EXPIRY_SCHEMA);
      })
      .immediate();
    this.presizeWal();
    this.checkpointer = new SqliteCheckpointer(join(options.dataDir, 'keybrake.sqlite3'), {
      intervalMs: CHECKPOINT_INTERVAL_MS,
      minPages: CHECKPOINT_MIN_PAGES,
    });
    this.owner = new OwnerLock(options.dataDir);
    this.retentionMs = options.idempotencyRetentionMs ?? DEFAULT_IDEMPOTENCY_RETENTION_MS;
    this.now = options.now ?? Date.now;
    this.recoverOrphanedReservations(this.now());
    this.db.pragma('busy_timeout = 0');
    void this.purgeKeptResponses(this.now());
    this.purgeTimer = setInterval(() => void this.purgeKeptResponses(Date.now()), 10 * 60 * 1000);
    this.purgeTimer.unref();
    // Another process of this data directory may die mid-call while this one runs on.
    this.recoveryTimer = setInterval(
      () => void this.write(() => this.recoverOrphanedReservations(this.now())).catch(() => {}),
      30 * 1000,
    );
    this.recoveryTimer.unref();
  }

  createKey(record: VaultKeyRecord): Promise<VaultKeyRecord> {
    // Regression: issue 16. The parent is read in the same transaction as the insert: a revoke or
    // taint of the parent commits either before it (and is seen here) or after it (and reaches the
    // child through the subtree update).
    return this.write(() => {
      let stored = record;
      if (record.parentKeyId !== null) {
        const parentChain = this.ancestry(record.parentKeyId);
        const parent = parentChain[0];
        if (!parent) throw parentMissingError();
        if (parent.revoked_at !== null || parent.expires_at <= record.createdAt) throw parentInactiveError();
        // The parent's chain is the new key's ancestry.
        if (!parentHasRoom(parentChain.length)) throw keyDepthExceededError();
        stored = {
          ...record,
          tainted: record.tainted || parent.tainted === 1,
          expiresAt: childExpiresAt(record.expiresAt, parent.expires_at),
        };
      }
      this.statement(
        `INSERT INTO vault_keys (key_id, key_hash, vendor, daily_cap, cap, allowed_endpoints, agent_run_label,
             parent_key_id, tainted, created_at, expires_at, revoked_at, max_rps, max_rpm, max_concurrent, identity)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        stored.keyId,
        stored.keyHash,
        stored.vendor,
        stored.dailyCapMicros,
        stored.capMicros,
        JSON.stringify(stored.allowedEndpoints),
        stored.agentRunLabel,
        stored.parentKeyId,
        stored.tainted ? 1 : 0,
        stored.createdAt,
        stored.expiresAt,
        stored.revokedAt,
        stored.limits?.maxRequestsPerSecond ?? null,
        stored.limits?.maxRequestsPerMinute ?? null,
        stored.limits?.maxConcurrent ?? null,
        identityText(stored.identity),
      );
      this.listing.keyCreated(stored);
      this.alerts.keyCreated(stored);
      return stored;
    });
  }

  findKeyByHash(keyHash: string): Promise<VaultKeyRecord | undefined> {
    return this.run(() => {
      // Regression: issue 21. Read on every call: served from memory while no revocation or taint
      // has been committed since, by this process or any other. The generation is read before the
      // row, so a record is never kept under a generation older than what it shows.
      const generation = (this.statement('SELECT generation FROM key_generation').get() as { generation: number })
        .generation;
      if (generation !== this.keyGeneration) {
        this.keysByHash.clear();
        this.keyGeneration = generation;
      }
      const cached = this.keysByHash.get(keyHash);
      if (cached) return cached;
      const row = this.statement('SELECT * FROM vault_keys WHERE key_hash = ?').get(keyHash) as KeyRow | undefined;
      if (!row) return undefined;
      const record = toRecord(row);
      if (this.keysByHash.size >= CACHED_KEYS) this.keysByHash.clear();
      this.keysByHash.set(keyHash, record);
      return record;
    });
  }

  getKey(keyId: string, now: number): Promise<VaultKeyState | undefined> {
    return this.run(() => {
      const row = this.keyRow(keyId);
      if (!row) return undefined;
      const today = this.statement('SELECT spent, reserved FROM daily_spend WHERE key_id = ? AND day = ?').get(
        keyId,
        utcDay(now),
      ) as { spent: number; reserved: number } | undefined;
      return {
        ...toRecord(row),
        spentMicros: row.spent,
        reservedMicros: row.reserved,
        unknownMicros: row.unknown,
        spentTodayMicros: today?.spent ?? 0,
        reservedTodayMicros: today?.reserved ?? 0,
        inFlight: row.in_flight,
      };
    });
  }

  revokeKey(keyId: string, now: number): Promise<boolean> {
    return this.write(() => {
      if (!this.keyRow(keyId)) return false;
      this.listing.subtreeChanging(keyId, 'revoked', now);
      // Revoking a parent revokes the whole subtree; already-revoked keys keep their first time.
      // The Redis store walks the same subtree in `MARK_SUBTREE_LUA`.
      this.statement(
        `WITH RECURSIVE subtree(id) AS (
             SELECT ? UNION SELECT k.key_id FROM vault_keys k JOIN subtree s ON k.parent_key_id = s.id)
           UPDATE vault_keys SET revoked_at = ? WHERE key_id IN (SELECT id FROM subtree) AND revoked_at IS NULL`,
      ).run(keyId, now);
      this.bumpKeyGeneration();
      return true;
    });
  }

  taintKey(keyId: string): Promise<boolean> {
    return this.write(() => {
      if (!this.keyRow(keyId)) return false;
      this.listing.subtreeChanging(keyId, 'tainted', this.now());
      this.statement(
        `WITH RECURSIVE subtree(id) AS (
             SELECT ? UNION SELECT k.key_id FROM vault_keys k JOIN subtree s ON k.parent_key_id = s.id)
           UPDATE vault_keys SET tainted = 1 WHERE key_id IN (SELECT id FROM subtree)`,
      ).run(keyId);
      this.bumpKeyGeneration();
      return true;
    });
  }

  reserve(input: ReserveInput): Promise<ReserveOutput> {
    return this.write((): ReserveOutput => {
      // The steps are numbered after `Store.reserve`, as in `lua/reserve.ts`.
      // 1. The key exists. One statement reads the chain with its spend of the day: revocation,
      // taint and spend are all decided on what this transaction reads.
      const day = utcDay(input.now);
      const chain = this.chainOf(input.keyId, day);
      if (chain.length === 0) return { kind: 'refused', code: 'invalid_vault_key' };
      // 2. Regression: issue 16. Only a chain written before the depth limit can be longer; its
      // furthest caps would go unchecked, so it cannot be used at all.
      if (chain.length > MAX_CHAIN_LENGTH) return { kind: 'refused', code: 'key_depth_exceeded' };
      // 3. Revocation and expiry, key by key, nearest first.
      for (const key of chain) {
        if (key.revoked_at !== null) return { kind: 'refused', code: 'vault_key_revoked' };
        if (key.expires_at <= input.now) return { kind: 'refused', code: 'vault_key_expired' };
      }
      // 4. Taint.
      const tainted = chain.some((key) => key.tainted === 1);
      if (input.sensitive && tainted) {
        return { kind: 'refused', code: 'tainted_request_refused' };
      }
      // 5. The idempotency claim.
      if (input.idempotency) {
        const claim = this.statement(
          'SELECT fingerprint, response FROM idempotency WHERE key_id = ? AND idempotency_key = ?',
        ).get(input.keyId, input.idempotency.key) as { fingerprint: string; response: string | null } | undefined;
        if (claim) {
          if (claim.fingerprint !== input.idempotency.fingerprint) {
            return { kind: 'refused', code: 'idempotency_key_reused' };
          }
          if (claim.response === null) return { kind: 'refused', code: 'idempotency_key_in_use' };
          return { kind: 'replay', response: JSON.parse(claim.response) as StoredResponse };
        }
      }

      // 6. Every cap, key by key, nearest first: lifetime, then daily.
      for (const key of chain) {
        if (key.cap !== null && key.spent + key.reserved + input.costMicros > key.cap) {
          this.alerts.capHit(key, 'lifetime', day);
          return { kind: 'refused', code: 'cap_exhausted', capKeyId: key.key_id };
        }
        if (
          key.daily_cap !== null &&
          (key.day_spent ?? 0) + (key.day_reserved ?? 0) + input.costMicros > key.daily_cap
        ) {
          this.alerts.capHit(key, 'daily', day);
          return { kind: 'refused', code: 'cap_exhausted', capKeyId: key.key_id };
        }
      }

      // 7. Issue 26: request and concurrency limits, only for a chain that has one.
      let inFlightKeys: string | null = null;
      let requests: number | null = null;
      let concurrent: number | null = null;
      if (chain.some((key) => key.max_rps !== null || key.max_rpm !== null || key.max_concurrent !== null)) {
        const states = chain.flatMap((key) => {
          const limits = limitsOfRow(key);
          return hasLimits(limits) ? [limitStateOfRow(key, limits)] : [];
        });
        const decision = admitCall(states, input.now);
        if (decision.kind === 'refused') {
          return { kind: 'refused', code: decision.code, retryAfterS: decision.retryAfterS };
        }
        inFlightKeys = countAdmittedCall((sql) => this.statement(sql), decision.updates);
        ({ requests, concurrent } = decision.room);
      }

      // Reserve before forwarding: a call that reaches the vendor can no longer be un-spent.
      for (const key of chain) this.addSpend(key.key_id, day, { reserved: input.costMicros });
      this.statement(
        `INSERT INTO reservations (reservation_id, key_id, day, amount, idempotency_key, pending, owner, in_flight_keys)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        input.reservationId,
        input.keyId,
        day,
        input.costMicros,
        input.idempotency?.key ?? null,
        JSON.stringify(input.pending),
        this.owner.ownerId,
        inFlightKeys,
      );
      this.rememberAncestry(chain);
      if (input.idempotency) {
        this.statement(
          'INSERT INTO idempotency (key_id, idempotency_key, fingerprint, response, created_at) VALUES (?, ?, ?, NULL, ?)',
        ).run(input.keyId, input.idempotency.key, input.idempotency.fingerprint, input.now);
      }
      const remainingMicros = remainingUnderCaps(
        chain.map((key) => ({
          cap: key.cap,
          used: key.spent + key.reserved,
          dailyCap: key.daily_cap,
          usedToday: (key.day_spent ?? 0) + (key.day_reserved ?? 0),
        })),
        input.costMicros,
      );
      return { kind: 'reserved', tainted, room: { remainingMicros, requests, concurrent } };
    });
  }

  settle(input: SettleInput): Promise<boolean> {
    return this.write(() => {
      const reservation = this.statement('DELETE FROM reservations WHERE reservation_id = ? RETURNING *').get(
        input.reservationId,
      ) as ReservationRow | undefined;
      // Already settled (a retried settlement) or recovered: settling twice would audit twice.
      if (!reservation) return false;
      this.book(reservation, input.actualMicros, input.audit.outcome === 'unknown');
      for (const object of input.objects ?? []) this.recordObjectState(input.keyId, object.objectId, object.state);
      if (reservation.idempotency_key !== null) {
        this.resolveIdempotency(input.keyId, reservation.idempotency_key, input.idempotentResponse);
      }
      this.append(input.audit);
      return true;
    });
  }

  appendAudit(input: AuditInput): Promise<void> {
    return this.write(() => this.append(input));
  }

  listCalls(keyId: string): Promise<AuditRecordJson[]> {
    return this.run(() =>
      (this.statement('SELECT record FROM audit WHERE key_id = ? ORDER BY seq').all(keyId) as { record: string }[]).map(
        (row) => JSON.parse(row.record) as AuditRecordJson,
      ),
    );
  }

  listCallsPage(keyId: string, afterSeq: number, limit: number): Promise<AuditRecordJson[]> {
    return this.listing.listCallsPage(keyId, afterSeq, limit);
  }

  async listKeys(query: KeyListQuery): Promise<KeyListPage> {
    this.digestRun ??= catchUpDigest(this.listing, this, query.now).finally(() => {
      this.digestRun = null;
    });
    await this.digestRun;
    return listKeyPage(this.listing, this, query);
  }

  readKeyChanges(position: string | null, limit: number): Promise<KeyChangesRead> {
    return this.listing.readKeyChanges(position, limit);
  }

  readAudit(afterSeq: number, limit: number): Promise<AuditEntry[]> {
    return this.run(() =>
      (
        this.statement('SELECT seq, record, prev_hash, hash FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(
          afterSeq,
          limit,
        ) as { seq: number; record: string; prev_hash: string; hash: string }[]
      ).map((row) => ({ seq: row.seq, record: row.record, prevHash: row.prev_hash, hash: row.hash })),
    );
  }

  auditHead(): Promise<AuditHead> {
    return this.run(() => {
      const head = this.statement('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as
        { seq: number; hash: string } | undefined;
      return { records: head?.seq ?? 0, head: head?.hash ?? GENESIS_HASH };
    });
  }

  chainedAuditHead(): Promise<AuditHead> {
    // Every record is chained in the transaction that writes it.
    return this.auditHead();
  }

  completeAuditHead(): Promise<AuditHead> {
    // Every record is chained in the transaction that writes it: the head is always complete.
    return this.auditHead();
  }

  auditMissing(): Promise<number> {
    // Each record is inserted as its chain row (seq, prev_hash, hash) in the transaction that
    // writes it: there is no record outside the chain to miss. A row deleted from the chain is
    // a break in it, which verification names.
    return Promise.resolve(0);
  }

  addCheckpoint(checkpoint: AuditCheckpoint): Promise<void> {
    return this.write(() => {
      this.statement('INSERT OR IGNORE INTO audit_checkpoints (records, checkpoint) VALUES (?, ?)').run(
        checkpoint.records,
        JSON.stringify(checkpoint),
      );
    });
  }

  listCheckpoints(): Promise<AuditCheckpoint[]> {
    return this.run(() =>
      (
        this.statement('SELECT checkpoint FROM audit_checkpoints ORDER BY records').all() as { checkpoint: string }[]
      ).map((row) => JSON.parse(row.checkpoint) as AuditCheckpoint),
    );
  }

  keyAlerts(keyId: string): Promise<KeyAlerts> {
    return this.run(() => this.alerts.keyAlerts(keyId));
  }

  async claimAlerts(input: AlertClaimInput): Promise<AlertClaimOutput> {
    // Read first: an idle outbox costs the sender's timer no write transaction.
    const due = await this.run(() => this.alerts.due(input.now));
    if (!due.any) return { claimed: [], pending: due.pending };
    return this.write(() => this.alerts.claim(input));
  }

  finishAlert(input: AlertFinishInput): Promise<void> {
    return this.write(() => this.alerts.finish(input));
  }

  archiveState(): Promise<ArchiveState> {
    return this.archive.archiveState();
  }

  acquireArchiveLease(input: ArchiveLeaseInput): Promise<boolean> {
    return this.archive.acquireLease(input);
  }

  releaseArchiveLease(holder: string): Promise<void> {
    return this.archive.releaseLease(holder);
  }

  recordArchivedSegment(input: ArchivedSegmentInput): Promise<boolean> {
    return this.archive.recordSegment(input);
  }

  trimArchivedAudit(holder: string, limit: number): Promise<number> {
    return this.archive.trim(holder, limit);
  }

  async purgeExpired(input: ExpiryPurgeInput): Promise<ExpiryPurgeOutput> {
    const families = await this.expiry.purge(input);
    const before = this.purgedResponses;
    // The purge of kept responses in progress (from the store's own timer) is joined, then one of `now`.
    if (this.purging) await this.purging;
    await this.purgeKeptResponses(input.now);
    return { ...families, idempotentResponses: families.idempotentResponses + this.purgedResponses - before };
  }

  ping(): Promise<void> {
    return this.run(() => {
      this.statement('SELECT 1').get();
    });
  }

  async close(): Promise<void> {
    // First, so that this connection is the file's last here and its close folds the WAL back.
    await this.checkpointer.stop();
    clearInterval(this.purgeTimer);
    clearInterval(this.recoveryTimer);
    clearTimeout(this.lockWaitTimer);
    this.closing = true;
    if (this.db.open) {
      // Writes still queued are committed now, waiting for the lock if need be: nothing is lost.
      this.db.pragma(`busy_timeout = ${WRITE_LOCK_WAIT_MS}`);
      this.commitPendingWrites();
      this.db.close();
    }
    this.owner.release();
  }

  /** A prepared statement, compiled once per SQL text: the hot path never re-parses SQL. */
  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  /** Queues a write for the next group commit (see the class comment). */
  private write<T>(operation: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pendingWrites.push({ operation, resolve: resolve as (value: unknown) => void, reject });
      if (!this.commitScheduled) {
        this.commitScheduled = true;
        setImmediate(() => this.commitPendingWrites());
      }
    });
  }

  /**
   * Commits every queued write in one transaction. The write lock is taken without waiting: while
   * another process holds it the batch is retried from a timer, so this process keeps serving
   * (the lock is held for one commit, about one fsync), up to `WRITE_LOCK_WAIT_MS`, then fails
   * closed. Writes run without savepoints (two statements each saved per write); when one throws,
   * the whole transaction is rolled back and the batch runs again with a savepoint per write, so
   * its failure undoes none of the others.
   */
  private commitPendingWrites(): void {
    this.commitScheduled = false;
    this.lockWaitTimer = undefined;
    const batch = this.pendingWrites;
    if (batch.length === 0) return;
    this.pendingWrites = [];
    try {
      this.statement('BEGIN IMMEDIATE').run();
    } catch (error) {
      if (isBusy(error) && !this.closing) {
        const now = Date.now();
        if (this.lockWaitSince === 0) this.lockWaitSince = now;
        if (now - this.lockWaitSince < WRITE_LOCK_WAIT_MS) {
          // Writes queued meanwhile join this batch, after it, in arrival order.
          this.pendingWrites = batch.concat(this.pendingWrites);
          this.commitScheduled = true;
          this.lockWaitTimer = setTimeout(() => this.commitPendingWrites(), 1);
          return;
        }
      }
      this.lockWaitSince = 0;
      for (const write of batch) write.reject(new StoreUnavailableError(error));
      return;
    }
    this.lockWaitSince = 0;
    const outcomes = this.runBatch(batch);
    if (outcomes === 'retry') {
      this.isolateWrites = true;
      this.pendingWrites = batch.concat(this.pendingWrites);
      this.commitPendingWrites();
      return;
    }
    try {
      if (outcomes === 'aborted') throw new Error('SQLite rolled the transaction back');
      this.statement('COMMIT').run();
    } catch (error) {
      // The commit itself failed (disk full, I/O error): nothing in the batch is durable, and a
      // refusal in it may rest on a write that was rolled back, so every write is unavailable.
      if (this.db.inTransaction) this.statement('ROLLBACK').run();
      this.forgetCaches(true);
      for (const write of batch) write.reject(new StoreUnavailableError(error));
      return;
    }
    this.isolateWrites = false;
    batch.forEach((write, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) write.resolve(outcome.value);
      else write.reject(toStoreError(outcome.error));
    });
  }

  /**
   * Runs a batch's writes inside the open transaction. `retry`: a write threw with no savepoint
   * around it, and the transaction was rolled back. `aborted`: SQLite itself ended the
   * transaction (a failure it cannot continue from), so nothing may run or commit after it.
   */
  private runBatch(
    batch: readonly PendingWrite[],
  ): ({ ok: true; value: unknown } | { ok: false; error: unknown })[] | 'retry' | 'aborted' {
    // Another connection committed since this one's last transaction: what is cached may be stale.
    const dataVersion = (this.statement('PRAGMA data_version').get() as { data_version: number }).data_version;
    if (dataVersion !== this.dataVersion) {
      this.forgetCaches();
      this.dataVersion = dataVersion;
    }
    const outcomes: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
    for (const write of batch) {
      if (!this.isolateWrites) {
        try {
          outcomes.push({ ok: true, value: write.operation() });
        } catch {
          if (this.db.inTransaction) this.statement('ROLLBACK').run();
          this.forgetCaches(true);
          return 'retry';
        }
        continue;
      }
      this.statement('SAVEPOINT write').run();
      try {
        outcomes.push({ ok: true, value: write.operation() });
        this.statement('RELEASE write').run();
      } catch (error) {
        outcomes.push({ ok: false, error });
        if (!this.db.inTransaction) return 'aborted';
        this.statement('ROLLBACK TO write').run();
        this.statement('RELEASE write').run();
        this.forgetCaches(true);
      }
    }
    return this.db.inTransaction ? outcomes : 'aborted';
  }

  /**
   * Drops what this connection remembers of the file's contents (see `dataVersion`), and after a
   * rollback also what a rolled-back write may have taught it.
   */
  private forgetCaches(rolledBack = false): void {
    this.auditTail = null;
    if (rolledBack) this.ancestorIds.clear();
  }

  /** Runs a read now, its failure typed as every store types it (`toStoreError`). */
  private run<T>(operation: () => T): Promise<T> {
    try {
      return Promise.resolve(operation());
    } catch (error) {
      return Promise.reject(toStoreError(error));
    }
  }

  private keyRow(keyId: string): KeyRow | undefined {
    return this.statement('SELECT * FROM vault_keys WHERE key_id = ?').get(keyId) as KeyRow | undefined;
  }

  /**
   * The key and its ancestors, nearest first: the whole permitted chain, and one key more when
   * the chain is longer than permitted (so callers can tell and refuse it).
   */
  private ancestry(keyId: string): KeyRow[] {
    const chain: KeyRow[] = [];
    let next: string | null = keyId;
    while (next !== null && chain.length < ANCESTRY_WALK_LIMIT) {
      const row = this.keyRow(next);
      if (!row) break;
      chain.push(row);
      next = row.parent_key_id;
    }
    return chain;
  }

  /**
   * The key and its ancestors with their spend of `day`, nearest first (see `CHAIN_SQL`). A key
   * already seen with no parent (parent links never change) is read without the recursive query:
   * one join, about two thirds of its cost, measured in a CPU profile at 32 connections as
   * the largest of the store's statements (issue 21).
   */
  private chainOf(keyId: string, day: string): ChainRow[] {
    if (this.ancestorIds.get(keyId)?.length === 1) {
      return this.statement(ROOT_KEY_SQL).all(day, keyId) as ChainRow[];
    }
    return this.statement(CHAIN_SQL).all(keyId, ANCESTRY_WALK_LIMIT, day) as ChainRow[];
  }

  /** Keeps a chain's ids for settling: parent links never change. */
  private rememberAncestry(chain: readonly KeyRow[]): void {
    const first = chain[0];
    if (first && !this.ancestorIds.has(first.key_id)) {
      if (this.ancestorIds.size >= CACHED_KEYS) this.ancestorIds.clear();
      this.ancestorIds.set(
        first.key_id,
        chain.map((key) => key.key_id),
      );
    }
  }

  /** Ids of a key and its ancestors, nearest first. */
  private ancestryIds(keyId: string): readonly string[] {
    return this.ancestorIds.get(keyId) ?? this.ancestry(keyId).map((key) => key.key_id);
  }

  private bumpKeyGeneration(): void {
    this.statement('UPDATE key_generation SET generation = generation + 1').run();
  }

  private addSpend(keyId: string, day: string, delta: { spent?: Micros; reserved?: Micros; unknown?: Micros }): void {
    const spent = delta.spent ?? 0;
    const reserved = delta.reserved ?? 0;
    this.statement(
      'UPDATE vault_keys SET spent = spent + ?, reserved = reserved + ?, unknown = unknown + ? WHERE key_id = ?',
    ).run(spent, reserved, delta.unknown ?? 0, keyId);
    this.statement(
      `INSERT INTO daily_spend (key_id, day, spent, reserved) VALUES (?, ?, ?, ?)
         ON CONFLICT (key_id, day) DO UPDATE SET spent = spent + excluded.spent, reserved = reserved + excluded.reserved`,
    ).run(keyId, day, spent, reserved);
  }

  /**
   * Turns a reservation already deleted from `reservations` into spend on the key and every
   * ancestor, in the day it was reserved.
   */
  private book(reservation: ReservationRow, actualMicros: Micros, unknown: boolean): void {
    // Issue 26: the call is no longer in flight, however it ended (settled, released, recovered).
    releaseInFlight((sql) => this.statement(sql), reservation.in_flight_keys);
    const keyIds = this.ancestryIds(reservation.key_id);
    for (const keyId of keyIds) {
      this.addSpend(keyId, reservation.day, {
        reserved: -reservation.amount,
        spent: actualMicros,
        unknown: unknown ? actualMicros : 0,
      });
    }
    // Issue 26: thresholds fire on spend, in the transaction that books it.
    this.alerts.booked(keyIds, reservation.day);
  }

  private resolveIdempotency(keyId: string, idempotencyKey: string, response: StoredResponse | null): void {
    if (response === null) {
      this.statement('DELETE FROM idempotency WHERE key_id = ? AND idempotency_key = ?').run(keyId, idempotencyKey);
    } else {
      // Regression: issue 20. Retention counts from when the response is kept, as on Redis (the
      // contract keeps it at least 24 hours): `created_at` was left at the claim, so a response
      // was purged the length of its call early.
      this.statement(
        'UPDATE idempotency SET response = ?, created_at = ? WHERE key_id = ? AND idempotency_key = ?',
      ).run(JSON.stringify(response), this.now(), keyId, idempotencyKey);
    }
  }

  /**
   * Appends one record to the chain. The chain's end is read inside the write transaction (or
   * known from this connection's last one, when no other connection has committed since), so
   * two processes never link two records to the same predecessor.
   */
  private append(input: AuditInput): void {
    let tail = this.auditTail;
    if (tail === null) {
      const head = this.statement('SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1').get() as
        { seq: number; hash: string } | undefined;
      tail = head ?? { seq: 0, hash: GENESIS_HASH };
    }
    const seq = tail.seq + 1;
    const entry = chainEntry(tail.hash, auditRecordJson(seq, input));
    this.statement('INSERT INTO audit (seq, key_id, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)').run(
      seq,
      input.keyId,
      entry.text,
      tail.hash,
      entry.hash,
    );
    this.auditTail = { seq, hash: entry.hash };
  }

  /**
   * Recovers the reservations of calls whose process died mid-call: those of owners that no
   * longer hold their lock (see `sqlite-owner.ts`), and any written before reservations had
   * owners. Whether the vendor charged is unknown, so the reservation becomes spend (never budget
   * again), the idempotency claim is released so a retry can reach the vendor with the same key,
   * and the audit chain records an `unknown` outcome. Runs at start-up and then periodically, as
   * another process may die while this one runs on; inside a write transaction either way.
   */
  private recoverOrphanedReservations(now: number): void {
    const recover = (): void => {
      const owners = this.statement('SELECT DISTINCT owner FROM reservations').all() as { owner: string | null }[];
      for (const { owner } of owners) {
        if (owner === this.owner.ownerId || (owner !== null && ownerAlive(this.dataDir, owner))) continue;
        const orphans = this.statement('DELETE FROM reservations WHERE owner IS ? RETURNING *').all(
          owner,
        ) as ReservationRow[];
        for (const reservation of orphans) {
          this.book(reservation, reservation.amount, true);
          if (reservation.idempotency_key !== null) {
            this.resolveIdempotency(reservation.key_id, reservation.idempotency_key, null);
          }
          const pending = JSON.parse(reservation.pending) as ReserveInput['pending'];
          this.append(interruptedAuditInput(pending, new Date(now).toISOString(), reservation.amount));
        }
      }
    };
    if (this.db.inTransaction) recover();
    else this.db.transaction(recover).immediate();
  }

  /** Creates a keyed table, or converts one written before it was `WITHOUT ROWID`. */
  private withoutRowid(table: (typeof KEYED_TABLES)[number]): void {
    const existing = this.db
      .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?")
      .get(table.name) as { sql: string } | undefined;
    if (!existing) {
      this.db.exec(table.sql.replace('{name}', table.name));
      return;
    }
    if (/WITHOUT ROWID/i.test(existing.sql)) return;
    if (table.name === 'reservations' && !/\bowner\b/.test(existing.sql)) {
      this.db.exec('ALTER TABLE reservations ADD COLUMN owner TEXT');
    }
    const converted = `${table.name}_without_rowid`;
    this.db.exec(`DROP TABLE IF EXISTS ${converted}`);
    this.db.exec(table.sql.replace('{name}', converted));
    this.db.exec(`INSERT INTO ${converted} (${table.columns}) SELECT ${table.columns} FROM ${table.name}`);
    this.db.exec(`DROP TABLE ${table.name}`);
    this.db.exec(`ALTER TABLE ${converted} RENAME TO ${table.name}`);
  }

  /**
   * Writes zeros up to `WAL_PRESIZE_PAGES` past the WAL's end (where the disk has 8 times that
   * free), holding the write lock so that no
   * process appends meanwhile. SQLite reads a WAL frame by frame and stops at the first whose
   * salt and checksum do not match, so zeros past the last frame are never taken for one (as the
   * frames of an earlier WAL generation are not); they only keep later commits from growing it.
   */
  private presizeWal(): void {
    const pageSize = this.db.pragma('page_size', { simple: true }) as number;
    const target = 32 + WAL_PRESIZE_PAGES * (pageSize + 24);
    this.db
      .transaction(() => {
        let fd: number;
        try {
          fd = openSync(join(this.dataDir, 'keybrake.sqlite3-wal'), 'r+');
        } catch {
          return; // No WAL yet: SQLite creates it with the first write.
        }
        const size = fstatSync(fd).size;
        try {
          // Only where the space is plenty: on a small disk it belongs to the records.
          const disk = statfsSync(this.dataDir);
          if (size >= target || disk.bavail * disk.bsize < 8 * (target - size)) return;
          const zeros = Buffer.alloc(Math.min(target - size, 1 << 20));
          for (let offset = size; offset < target; offset += zeros.length) {
            writeSync(fd, zeros, 0, Math.min(zeros.length, target - offset), offset);
          }
          fdatasyncSync(fd);
        } catch {
          // Out of space after all: give it back. Every frame lies below `size`.
          ftruncateSync(fd, size);
        } finally {
          closeSync(fd);
        }
      })
      .immediate();
  }

  /**
   * Deletes the kept responses past their retention, `PURGE_SLICE_ROWS` rows of the table (in key
   * order) per write, each write group-committed with the calls of its turn of the event loop.
   * Regression: issue 21. The purge was one `DELETE` that scanned the whole table on the event
   * loop while holding the write lock: with a day of kept responses (a million rows: 1.7 s here,
   * 7.3 s when a tenth of them had expired) every call waited for it, at start-up and every 10
   * minutes, and another process of the data directory failed its writes once it had waited 5 s.
   * Stops at `close`; the next start or interval takes it up again.
   */
  private purgeKeptResponses(now: number): Promise<void> {
    this.purging ??= (async () => {
      let after: IdempotencyPosition | null = null;
      do {
        const from: IdempotencyPosition | null = after;
        after = await this.write((): IdempotencyPosition | null => this.purgeSlice(now - this.retentionMs, from));
      } while (after !== null && !this.closing);
    })()
      // A failed slice (store unavailable) is retried by the next interval.
      .catch(() => undefined)
      .finally(() => {
        this.purging = undefined;
      });
    return this.purging;
  }

  /**
   * Purges the expired kept responses among the next `PURGE_SLICE_ROWS` rows after `after`; the
   * position of the slice's last row, or null when the slice reached the end of the table.
   */
  private purgeSlice(before: number, after: IdempotencyPosition | null): IdempotencyPosition | null {
    const past = after === null ? [] : [after.keyId, after.idempotencyKey];
    const pastSql = after === null ? '' : '(key_id, idempotency_key) > (?, ?) AND';
    const end = this.statement(
      `SELECT key_id, idempotency_key FROM idempotency ${after === null ? '' : 'WHERE (key_id, idempotency_key) > (?, ?)'}
         ORDER BY key_id, idempotency_key LIMIT 1 OFFSET ${PURGE_SLICE_ROWS - 1}`,
    ).get(...past) as { key_id: string; idempotency_key: string } | undefined;
    if (end === undefined) {
      this.purgedResponses += this.statement(
        `DELETE FROM idempotency WHERE ${pastSql} response IS NOT NULL AND created_at < ?`,
      ).run(...past, before).changes;
      return null;
    }
    this.purgedResponses += this.statement(
      `DELETE FROM idempotency WHERE ${pastSql} (key_id, idempotency_key) <= (?, ?)
         AND response IS NOT NULL AND created_at < ?`,
    ).run(...past, end.key_id, end.idempotency_key, before).changes;
    return { keyId: end.key_id, idempotencyKey: end.idempotency_key };
  }

  claimObject(input: ObjectClaimInput): Promise<ObjectClaimOutput> {
    return this.write((): ObjectClaimOutput => {
      const family = this.familyOf(input.keyId);
      const row = this.objectRow(family, input.objectId);
      if (row?.claim_id && (row.claim_until ?? 0) > input.now) return { kind: 'busy' };
      // A claim that lapsed belonged to a call whose outcome was never recorded: the state may be stale.
      const lapsed = Boolean(row?.claim_id);
      this.statement(
        `INSERT INTO vendor_objects (family, object_id, claim_id, claim_until) VALUES (?, ?, ?, ?)
           ON CONFLICT (family, object_id) DO UPDATE SET claim_id = excluded.claim_id, claim_until = excluded.claim_until`,
      ).run(family, input.objectId, input.claimId, input.until);
      return { kind: 'claimed', state: row && !lapsed ? objectState(row) : null };
    });
  }

  releaseObject(input: ObjectReleaseInput): Promise<void> {
    return this.write(() => {
      const family = this.familyOf(input.keyId);
      const row = this.objectRow(family, input.objectId);
      // A claim that lapsed and was taken by another call is that call's to release.
      if (!row || row.claim_id !== input.claimId) return;
      if (input.state === undefined) {
        this.statement(
          'UPDATE vendor_objects SET claim_id = NULL, claim_until = NULL WHERE family = ? AND object_id = ?',
        ).run(family, input.objectId);
      } else if (input.state === null) {
        this.statement('DELETE FROM vendor_objects WHERE family = ? AND object_id = ?').run(family, input.objectId);
      } else {
        this.statement(
          `UPDATE vendor_objects SET amount = ?, currency = ?, booked = ?, claim_id = NULL, claim_until = NULL
             WHERE family = ? AND object_id = ?`,
        ).run(input.state.amount, input.state.currency, input.state.bookedMicros, family, input.objectId);
      }
    });
  }

  recordObject(input: ObjectRecordInput): Promise<void> {
    return this.write(() => this.recordObjectState(input.keyId, input.objectId, input.state));
  }

  private recordObjectState(keyId: string, objectId: string, state: VendorObjectState): void {
    // Spend already booked for the object is never forgotten by a later answer.
    this.statement(
      `INSERT INTO vendor_objects (family, object_id, amount, currency, booked) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (family, object_id) DO UPDATE SET amount = excluded.amount, currency = excluded.currency,
           booked = MAX(booked, excluded.booked)`,
    ).run(this.familyOf(keyId), objectId, state.amount, state.currency, state.bookedMicros);
  }

  /**
   * The family a key belongs to: its root key's id. From the chain its reservation read when this
   * process has it (parent links never change): a settlement then reads no key row (issue 21).
   */
  private familyOf(keyId: string): string {
    const known = this.ancestorIds.get(keyId);
    if (known !== undefined && known.length < ANCESTRY_WALK_LIMIT) return known.at(-1)!;
    const root = this.ancestry(keyId).at(-1);
    // Regression: issue 20. An unknown key was its own family here (objects claimed and recorded
    // for a key that does not exist) while Redis failed it as a 503; both refuse it now.
    if (!root) throw new InvalidVaultKeyError(true);
    return root.key_id;
  }

  private objectRow(family: string, objectId: string): ObjectRow | undefined {
    return this.statement('SELECT * FROM vendor_objects WHERE family = ? AND object_id = ?').get(family, objectId) as
      ObjectRow | undefined;
  }
}

interface ObjectRow {
  amount: number | null;
  currency: string | null;
  booked: number;
  claim_id: string | null;
  claim_until: number | null;
}

function objectState(row: ObjectRow): VendorObjectState | null {
  return row.amount === null || row.currency === null
    ? null
    : { amount: row.amount, currency: row.currency, bookedMicros: row.booked };
}

function isBusy(error: unknown): boolean {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

function toRecord(row: KeyRow): VaultKeyRecord {
  return {
    keyId: row.key_id,
    keyHash: row.key_hash,
    vendor: row.vendor,
    dailyCapMicros: row.daily_cap,
    capMicros: row.cap,
    allowedEndpoints: JSON.parse(row.allowed_endpoints) as string[],
    agentRunLabel: row.agent_run_label,
    parentKeyId: row.parent_key_id,
    tainted: row.tainted === 1,
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
    limits: limitsOfRow(row),
    identity: identityOfText(row.identity),
  };
}
