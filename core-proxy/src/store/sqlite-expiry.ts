/**
 * The embedded store's removal of expired key families (issue 23; see `Store.purgeExpired`).
 * A family is found by its root key's expiry (the partial index below holds root keys only, so a
 * call's writes never touch it: SQLite updates an index only when a statement sets one of its
 * columns, and `expires_at` is written once), and each family's checks and removal run in one
 * write of the store's group commit: a reservation, an audit record or an alert that lands in
 * between is seen, and the family is kept.
 */
import type Database from 'better-sqlite3';
import type { ExpiryPurgeInput } from './store.js';
import { type ExpiryCounts, NO_EXPIRY_COUNTS, addExpiryCounts } from './expiry-counts.js';

/** The index of root keys by expiry the purge walks. */
export const EXPIRY_SCHEMA = `
CREATE INDEX IF NOT EXISTS vault_keys_root_expiry ON vault_keys(expires_at, key_id) WHERE parent_key_id IS NULL;
`;

/**
 * Families looked at per write: each costs a handful of indexed reads and deletes, so a write
 * holds the event loop (and the write lock) for about a millisecond or two.
 */
const FAMILIES_PER_WRITE = 25;

/** What the purge needs of the store (`SqliteStore`'s own helpers). */
export interface SqliteExpiryDeps {
  readonly statement: (sql: string) => Database.Statement;
  readonly write: <T>(operation: () => T) => Promise<T>;
}

/** Where the walk of root keys by expiry has got to. */
interface ExpiryPosition {
  readonly expiresAt: number;
  readonly keyId: string;
}

/** What one write of the purge removed, and where the next one starts (null: the end). */
interface PurgeSlice {
  readonly counts: ExpiryCounts;
  readonly after: ExpiryPosition | null;
}

/** The key and its descendants. */
const SUBTREE_SQL = `WITH RECURSIVE subtree(id) AS (
  SELECT ? UNION SELECT k.key_id FROM vault_keys k JOIN subtree s ON k.parent_key_id = s.id)
SELECT id FROM subtree`;

/** The embedded store's purge of expired families. */
export class SqliteExpiry {
  constructor(private readonly deps: SqliteExpiryDeps) {}

  /** Removes up to `limit` families past their retention, a slice per write. */
  async purge(input: ExpiryPurgeInput): Promise<ExpiryCounts & { more: boolean }> {
    const cutoff = input.now - input.keyRetentionMs;
    let totals = NO_EXPIRY_COUNTS;
    let after: ExpiryPosition | null = null;
    for (;;) {
      const room = input.limit - totals.families;
      if (room <= 0) return { ...totals, more: true };
      const from: ExpiryPosition | null = after;
      const slice: PurgeSlice = await this.deps.write((): PurgeSlice =>
        this.purgeSlice(cutoff, from, Math.min(FAMILIES_PER_WRITE, room)),
      );
      totals = addExpiryCounts(totals, slice.counts);
      if (slice.after === null) return { ...totals, more: false };
      after = slice.after;
    }
  }

  /**
   * Looks at the next `families` root keys expired before `cutoff` after `after`, and removes
   * those that may go. Returns the position of the last one looked at, or null at the end.
   */
  private purgeSlice(cutoff: number, after: ExpiryPosition | null, families: number): PurgeSlice {
    const { statement } = this.deps;
    const roots = (
      after === null
        ? statement(
            `SELECT key_id, expires_at FROM vault_keys WHERE parent_key_id IS NULL AND expires_at < ?
               ORDER BY expires_at, key_id LIMIT ?`,
          ).all(cutoff, families)
        : statement(
            `SELECT key_id, expires_at FROM vault_keys WHERE parent_key_id IS NULL AND expires_at < ?
               AND (expires_at, key_id) > (?, ?) ORDER BY expires_at, key_id LIMIT ?`,
          ).all(cutoff, after.expiresAt, after.keyId, families)
    ) as { key_id: string; expires_at: number }[];
    let counts = NO_EXPIRY_COUNTS;
    for (const root of roots) counts = addExpiryCounts(counts, this.purgeFamily(root.key_id));
    const last = roots.at(-1);
    return {
      counts,
      after: roots.length < families || !last ? null : { expiresAt: last.expires_at, keyId: last.key_id },
    };
  }

  /** Removes one family if nothing of it is still in use; inside the caller's write. */
  private purgeFamily(rootId: string): ExpiryCounts {
    const { statement } = this.deps;
    const ids = (statement(SUBTREE_SQL).all(rootId) as { id: string }[]).map((row) => row.id);
    const idsJson = JSON.stringify(ids);
    // Never while a call is in flight: its settlement books spend on these keys.
    const inFlight = statement(
      'SELECT 1 FROM reservations WHERE key_id IN (SELECT value FROM json_each(?)) LIMIT 1',
    ).get(idsJson);
    const inUse =
      inFlight !== undefined ||
      ids.some(
        (id) =>
          // Audit records still live: `/vault/keys/{id}/calls` lists them, and needs the key.
          statement('SELECT 1 FROM audit WHERE key_id = ? LIMIT 1').get(id) !== undefined ||
          // An alert not yet delivered (or given up on) still names the key to its receiver.
          statement("SELECT 1 FROM alert_outbox WHERE key_id = ? AND state = 'pending' LIMIT 1").get(id) !== undefined,
      );
    if (inUse) return { ...NO_EXPIRY_COUNTS, kept: 1 };
    let spendDays = 0;
    let alerts = 0;
    let idempotentResponses = 0;
    for (const id of ids) {
      spendDays += statement('DELETE FROM daily_spend WHERE key_id = ?').run(id).changes;
      alerts += statement('DELETE FROM alert_outbox WHERE key_id = ?').run(id).changes;
      statement('DELETE FROM key_alerts WHERE key_id = ?').run(id);
      statement('DELETE FROM key_stats WHERE key_id = ?').run(id);
      idempotentResponses += statement('DELETE FROM idempotency WHERE key_id = ?').run(id).changes;
    }
    const vendorObjects = statement('DELETE FROM vendor_objects WHERE family = ?').run(rootId).changes;
    // One statement for the whole family: the parent links are checked at its end.
    const keys = statement('DELETE FROM vault_keys WHERE key_id IN (SELECT value FROM json_each(?))').run(
      idsJson,
    ).changes;
    // Every process's cache of keys by vault key hash starts over (see `SqliteStore.findKeyByHash`).
    statement('UPDATE key_generation SET generation = generation + 1').run();
    return { keys, families: 1, spendDays, idempotentResponses, alerts, vendorObjects, kept: 0 };
  }
}
