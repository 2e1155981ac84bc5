/**
 * The embedded store's part of the audit archive (issue 23): how far the chain is archived, the
 * archiver's lease, and the trim of archived records from the live tables.
 *
 * What each costs a proxied call: nothing. The tables are written by the archiver only, a slice
 * at a time, each slice group-committed with the calls of its turn of the event loop.
 */
import type Database from 'better-sqlite3';
import { GENESIS_HASH } from '../audit/chain.js';
import type { ArchiveLeaseInput, ArchiveState, ArchivedSegmentInput } from './store.js';

/** Tables of the archive state and lease. */
export const ARCHIVE_SCHEMA = `
CREATE TABLE IF NOT EXISTS archive_state (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  archived_through INTEGER NOT NULL,
  archived_head TEXT NOT NULL,
  segments INTEGER NOT NULL
);
INSERT OR IGNORE INTO archive_state (id, archived_through, archived_head, segments) VALUES (0, 0, '${GENESIS_HASH}', 0);
CREATE TABLE IF NOT EXISTS archive_lease (
  id INTEGER PRIMARY KEY CHECK (id = 0),
  holder TEXT NOT NULL,
  until INTEGER NOT NULL
);
`;

/** What {@link SqliteArchive} needs of the store: its statements and its two ways to run. */
export interface SqliteArchiveAccess {
  readonly statement: (sql: string) => Database.Statement;
  readonly write: <T>(operation: () => T) => Promise<T>;
  readonly run: <T>(operation: () => T) => Promise<T>;
  readonly now: () => number;
}

interface StateRow {
  archived_through: number;
  archived_head: string;
  segments: number;
}

/** The archive's state, lease and trim on the embedded store. */
export class SqliteArchive {
  constructor(private readonly access: SqliteArchiveAccess) {}

  archiveState(): Promise<ArchiveState> {
    return this.access.run(() => this.state());
  }

  acquireLease(input: ArchiveLeaseInput): Promise<boolean> {
    return this.access.write(() => {
      const now = this.access.now();
      const lease = this.lease();
      if (lease && lease.holder !== input.holder && lease.until > now) return false;
      this.access
        .statement(
          `INSERT INTO archive_lease (id, holder, until) VALUES (0, ?, ?)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until = excluded.until`,
        )
        .run(input.holder, now + input.ttlMs);
      return true;
    });
  }

  releaseLease(holder: string): Promise<void> {
    return this.access.write(() => {
      this.access.statement('DELETE FROM archive_lease WHERE id = 0 AND holder = ?').run(holder);
    });
  }

  recordSegment(input: ArchivedSegmentInput): Promise<boolean> {
    return this.access.write(() => {
      if (!this.holds(input.holder)) return false;
      const state = this.state();
      // Only the next range, and only once: a retried or raced record changes nothing.
      if (state.archivedThrough !== input.firstSeq - 1 || state.archivedHead !== input.prevHash) return false;
      const last = this.access.statement('SELECT hash FROM audit WHERE seq = ?').get(input.lastSeq) as
        { hash: string } | undefined;
      if (last?.hash !== input.head) return false;
      this.access
        .statement(
          'UPDATE archive_state SET archived_through = ?, archived_head = ?, segments = segments + 1 WHERE id = 0',
        )
        .run(input.lastSeq, input.head);
      return true;
    });
  }

  trim(holder: string, limit: number): Promise<number> {
    return this.access.write(() => {
      if (!this.holds(holder)) return 0;
      const { archivedThrough } = this.state();
      // The chain's last record stays: the next record is chained to it (see `append`).
      const head = this.access.statement('SELECT MAX(seq) AS seq FROM audit').get() as { seq: number | null };
      const through = Math.min(archivedThrough, (head.seq ?? 0) - 1);
      // The oldest first, `limit` rows per write: no call waits long behind one (issue 21's purge).
      return this.access
        .statement('DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE seq <= ? ORDER BY seq LIMIT ?)')
        .run(through, limit).changes;
    });
  }

  private state(): ArchiveState & { trimmedThrough: number } {
    const row = this.access
      .statement('SELECT archived_through, archived_head, segments FROM archive_state WHERE id = 0')
      .get() as StateRow | undefined;
    const oldest = this.access.statement('SELECT MIN(seq) AS seq FROM audit').get() as { seq: number | null };
    const archivedThrough = row?.archived_through ?? 0;
    return {
      archivedThrough,
      archivedHead: row?.archived_head ?? GENESIS_HASH,
      segments: row?.segments ?? 0,
      trimmedThrough: oldest.seq === null ? archivedThrough : oldest.seq - 1,
    };
  }

  private lease(): { holder: string; until: number } | undefined {
    return this.access.statement('SELECT holder, until FROM archive_lease WHERE id = 0').get() as
      { holder: string; until: number } | undefined;
  }

  private holds(holder: string): boolean {
    const lease = this.lease();
    return lease !== undefined && lease.holder === holder && lease.until > this.access.now();
  }
}
