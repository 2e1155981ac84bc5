import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';

/**
 * Which embedded-store processes on one data directory are alive (issue 21: several processes on
 * one data directory). Each open store owns its reservations under a random owner id and holds an
 * exclusive lock on `keybrake.sqlite3-owner-<id>` (a tiny SQLite file in `locking_mode=EXCLUSIVE`) for as long
 * as it is open. The kernel drops the lock when the process dies, however it dies (`kill -9`
 * included), so a reservation is orphaned exactly when its owner's lock can be taken: not by
 * process id, which a restarted container reuses (PID 1), nor by a lease that a stalled process
 * could outlive. SQLite's WAL mode already requires every process of a data directory to share
 * one host, so one host's locks decide.
 */
export class OwnerLock {
  readonly ownerId = randomOwnerId();
  private readonly path: string;
  private readonly db: Database.Database;

  constructor(dataDir: string) {
    this.path = lockPath(dataDir, this.ownerId);
    // A prober may hold a shared lock for an instant: wait for it rather than fail.
    this.db = new Database(this.path, { timeout: 5000 });
    this.db.pragma('locking_mode = EXCLUSIVE');
    this.db.pragma('synchronous = OFF');
    // The first write takes the exclusive lock; EXCLUSIVE locking mode keeps it until close.
    this.db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS owner (pid INTEGER); COMMIT');
  }

  release(): void {
    if (!this.db.open) return;
    this.db.close();
    rmSync(this.path, { force: true });
  }
}

/**
 * Whether the store that owns `ownerId` still has the data directory open. A dead owner's lock file
 * is removed once it is found dead (its reservations are then recovered by the caller).
 */
export function ownerAlive(dataDir: string, ownerId: string): boolean {
  const path = lockPath(dataDir, ownerId);
  let probe: Database.Database;
  try {
    probe = new Database(path, { timeout: 0, fileMustExist: true });
  } catch {
    // No lock file: its owner closed (and removed it) or never got that far.
    return false;
  }
  try {
    probe.prepare('SELECT count(*) FROM sqlite_master').get();
  } catch (error) {
    probe.close();
    if ((error as { code?: string }).code === 'SQLITE_BUSY') return true;
    throw error;
  }
  probe.close();
  rmSync(path, { force: true });
  return false;
}

/** Beside the database file, as its own `-wal` and `-shm` are. */
function lockPath(dataDir: string, ownerId: string): string {
  return join(dataDir, `keybrake.sqlite3-owner-${ownerId}`);
}

function randomOwnerId(): string {
  return randomUUID().replaceAll('-', '');
}
