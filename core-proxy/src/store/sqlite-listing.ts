/**
 * The embedded store's part of the console's API (issue 22): the key list's indexes and digest
 * (see `key-listing.ts`), the key change log the live feed reads, and calls by page.
 *
 * What each costs a proxied call: nothing. `vault_keys_newest` indexes columns a call never
 * writes (SQLite updates an index only when a statement sets one of its columns); `key_stats` and
 * its two indexes are written by the digest, outside the call; `key_changes` is written in the
 * transactions of issue, revoke and taint.
 */
import type Database from 'better-sqlite3';
import { type AuditRecordJson } from '../audit/record.js';
import {
  type DigestProgress,
  type DigestUpdate,
  type IndexPosition,
  type KeyCallStats,
  type KeyListingIndex,
  type KeySort,
  initialScores,
} from './key-listing.js';
import type { KeyChange, KeyChangeKind } from './store.js';

/** Rows of the change log kept; older ones are trimmed as new keys are issued. */
const KEY_CHANGES_KEPT = 100_000;

/**
 * Tables and indexes of the listing. `key_stats` has one row per key from its insert on (rows of
 * keys written before it are added at open, and the digest then counts the whole chain once).
 */
export const LISTING_SCHEMA = `
CREATE INDEX IF NOT EXISTS vault_keys_newest ON vault_keys(created_at, key_id);
CREATE TABLE IF NOT EXISTS key_stats (
  key_id TEXT PRIMARY KEY,
  calls INTEGER NOT NULL DEFAULT 0,
  cap_hits INTEGER NOT NULL DEFAULT 0,
  refusals INTEGER NOT NULL DEFAULT 0,
  spent INTEGER NOT NULL DEFAULT 0,
  headroom INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS key_stats_spent ON key_stats(spent, key_id);
CREATE INDEX IF NOT EXISTS key_stats_headroom ON key_stats(headroom, key_id);
CREATE TABLE IF NOT EXISTS key_digest (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  seq INTEGER NOT NULL,
  day TEXT NOT NULL
);
INSERT OR IGNORE INTO key_digest (id, seq, day) VALUES (0, 0, '');
INSERT OR IGNORE INTO key_stats (key_id, spent, headroom)
  SELECT key_id, spent, MIN(COALESCE(cap, daily_cap, ${Number.MAX_SAFE_INTEGER}), COALESCE(daily_cap, cap, ${Number.MAX_SAFE_INTEGER}))
    FROM vault_keys;
CREATE TABLE IF NOT EXISTS key_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  key_id TEXT NOT NULL,
  change TEXT NOT NULL,
  at INTEGER NOT NULL
);
`;

/** The subtree of `?` (the key and its descendants). */
const SUBTREE = `WITH RECURSIVE subtree(id) AS (
  SELECT ? UNION SELECT k.key_id FROM vault_keys k JOIN subtree s ON k.parent_key_id = s.id)`;

/** Index scans (exported for the test that reads their query plans), each an index range in the sort's order: `(score, key_id)` past the cursor. */
export const SCAN_SQL: Record<KeySort, { first: string; after: string }> = {
  newest: {
    first: 'SELECT key_id, created_at AS score FROM vault_keys ORDER BY created_at DESC, key_id DESC LIMIT ?',
    after: `SELECT key_id, created_at AS score FROM vault_keys WHERE (created_at, key_id) < (?, ?)
              ORDER BY created_at DESC, key_id DESC LIMIT ?`,
  },
  most_spent: {
    first: 'SELECT key_id, spent AS score FROM key_stats ORDER BY spent DESC, key_id DESC LIMIT ?',
    after: `SELECT key_id, spent AS score FROM key_stats WHERE (spent, key_id) < (?, ?)
              ORDER BY spent DESC, key_id DESC LIMIT ?`,
  },
  closest_to_cap: {
    first: 'SELECT key_id, headroom AS score FROM key_stats ORDER BY headroom, key_id LIMIT ?',
    after: `SELECT key_id, headroom AS score FROM key_stats WHERE (headroom, key_id) > (?, ?)
              ORDER BY headroom, key_id LIMIT ?`,
  },
};

/** How the embedded store lends its connection: prepared statements, group-committed writes, typed reads. */
export interface SqliteAccess {
  statement(sql: string): Database.Statement;
  write<T>(operation: () => T): Promise<T>;
  run<T>(operation: () => T): Promise<T>;
}

/** The embedded store's listing indexes, digest, change log and call pages. */
export class SqliteListing implements KeyListingIndex {
  constructor(private readonly db: SqliteAccess) {}

  /** In `createKey`'s transaction: the key's digest row and its `issued` change. */
  keyCreated(record: {
    keyId: string;
    capMicros: number | null;
    dailyCapMicros: number | null;
    createdAt: number;
  }): void {
    const scores = initialScores(record);
    this.db
      .statement('INSERT INTO key_stats (key_id, spent, headroom) VALUES (?, ?, ?)')
      .run(record.keyId, scores.spent, scores.headroom);
    const { lastInsertRowid } = this.db
      .statement('INSERT INTO key_changes (key_id, change, at) VALUES (?, ?, ?)')
      .run(record.keyId, 'issued', record.createdAt);
    this.db.statement('DELETE FROM key_changes WHERE seq <= ?').run(Number(lastInsertRowid) - KEY_CHANGES_KEPT);
  }

  /**
   * In `revokeKey`'s or `taintKey`'s transaction, before the subtree is marked: one change for each
   * key of the subtree the mark changes.
   */
  subtreeChanging(keyId: string, change: Extract<KeyChangeKind, 'revoked' | 'tainted'>, at: number): void {
    const unchanged = change === 'revoked' ? 'revoked_at IS NULL' : 'tainted = 0';
    this.db
      .statement(
        `INSERT INTO key_changes (key_id, change, at) ${SUBTREE}
           SELECT key_id, ?, ? FROM vault_keys WHERE key_id IN (SELECT id FROM subtree) AND ${unchanged} ORDER BY key_id`,
      )
      .run(keyId, change, at);
  }

  scan(sort: KeySort, after: IndexPosition | null, count: number): Promise<IndexPosition[]> {
    return this.db.run(() => {
      const rows = (
        after === null
          ? this.db.statement(SCAN_SQL[sort].first).all(count)
          : this.db.statement(SCAN_SQL[sort].after).all(after.score, after.keyId, count)
      ) as { key_id: string; score: number }[];
      return rows.map((row) => ({ keyId: row.key_id, score: row.score }));
    });
  }

  stats(keyIds: readonly string[]): Promise<Map<string, KeyCallStats>> {
    return this.db.run(() => {
      const stats = new Map<string, KeyCallStats>();
      const select = this.db.statement('SELECT calls, cap_hits, refusals FROM key_stats WHERE key_id = ?');
      for (const keyId of keyIds) {
        const row = select.get(keyId) as { calls: number; cap_hits: number; refusals: number } | undefined;
        if (row) stats.set(keyId, { calls: row.calls, capHits: row.cap_hits, refusals: row.refusals });
      }
      return stats;
    });
  }

  progress(): Promise<DigestProgress> {
    return this.db.run(() => this.db.statement('SELECT seq, day FROM key_digest').get() as DigestProgress);
  }

  apply(update: DigestUpdate): Promise<boolean> {
    // In one write transaction, read again there: another process of this data directory may have
    // applied the same records meanwhile.
    return this.db.write(() => {
      const now = this.db.statement('SELECT seq, day FROM key_digest').get() as DigestProgress;
      if (now.seq !== update.from.seq || now.day !== update.from.day) return false;
      const count = this.db.statement(
        'UPDATE key_stats SET calls = calls + ?, cap_hits = cap_hits + ?, refusals = refusals + ? WHERE key_id = ?',
      );
      for (const [keyId, stats] of update.counts) count.run(stats.calls, stats.capHits, stats.refusals, keyId);
      const score = this.db.statement('UPDATE key_stats SET spent = ?, headroom = ? WHERE key_id = ?');
      for (const scores of update.scores) score.run(scores.spent, scores.headroom, scores.keyId);
      this.db.statement('UPDATE key_digest SET seq = ?, day = ?').run(update.to.seq, update.to.day);
      return true;
    });
  }

  /** Key changes after a position (`null`: from now on), oldest first, at most `limit`. */
  readKeyChanges(after: string | null, limit: number): Promise<{ changes: KeyChange[]; position: string }> {
    return this.db.run(() => {
      const from = after === null ? this.lastChange() : Number(after);
      const rows = this.db
        .statement('SELECT seq, key_id, change, at FROM key_changes WHERE seq > ? ORDER BY seq LIMIT ?')
        .all(Number.isSafeInteger(from) ? from : 0, limit) as {
        seq: number;
        key_id: string;
        change: KeyChangeKind;
        at: number;
      }[];
      return {
        changes: rows.map((row) => ({ keyId: row.key_id, change: row.change, at: row.at, position: String(row.seq) })),
        position: String(rows.at(-1)?.seq ?? from),
      };
    });
  }

  private lastChange(): number {
    return (this.db.statement('SELECT MAX(seq) AS seq FROM key_changes').get() as { seq: number | null }).seq ?? 0;
  }

  /** A key's records with `seq > afterSeq`, oldest first, at most `limit`. */
  listCallsPage(keyId: string, afterSeq: number, limit: number): Promise<AuditRecordJson[]> {
    return this.db.run(() =>
      (
        this.db
          .statement('SELECT record FROM audit WHERE key_id = ? AND seq > ? ORDER BY seq LIMIT ?')
          .all(keyId, afterSeq, limit) as { record: string }[]
      ).map((row) => JSON.parse(row.record) as AuditRecordJson),
    );
  }
}
