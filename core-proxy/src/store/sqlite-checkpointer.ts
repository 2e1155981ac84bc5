import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/**
 * Copies the embedded store's WAL back into the database file from a worker thread, off the
 * event loop (issue 21). Left to SQLite, the commit that takes the WAL past its checkpoint size
 * runs the checkpoint itself, inside the call: one call in about a hundred waited for two more
 * fsyncs and the copy. Here a thread with its own connection runs a `PASSIVE` checkpoint every
 * `intervalMs` (it never waits for and never blocks a writer), with the same `synchronous=FULL`.
 * The store keeps SQLite's own checkpoint as a backstop, at a size this thread keeps the WAL under.
 */
export class SqliteCheckpointer {
  private readonly worker: Worker;

  constructor(databasePath: string, intervalMs: number) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { databasePath, intervalMs } });
    // A checkpoint that fails (disk full) is retried at the next tick; the backstop stays.
    this.worker.on('error', () => undefined);
    this.worker.unref();
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}

const WORKER_SOURCE = `
const { workerData } = require('node:worker_threads');
const Database = require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))});
const db = new Database(workerData.databasePath, { timeout: 0 });
db.pragma('synchronous = FULL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
setInterval(() => {
  try {
    checkpoint.get();
  } catch {
    // Busy (another process is checkpointing) or failing: the next tick tries again.
  }
}, workerData.intervalMs);
`;
