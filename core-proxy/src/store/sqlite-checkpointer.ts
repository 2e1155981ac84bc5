import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** Options of {@link SqliteCheckpointer}. */
export interface SqliteCheckpointerOptions {
  /** How often the thread looks at the WAL's length. */
  readonly intervalMs: number;
  /** The WAL length, in pages, from which it checkpoints (a shorter WAL is left to grow). */
  readonly minPages: number;
}

/**
 * Copies the embedded store's WAL back into the database file from a worker thread, off the
 * event loop (issue 21). Left to SQLite, the commit that takes the WAL past its checkpoint size
 * runs the checkpoint itself, inside the call: one call in about a hundred waited for two more
 * fsyncs and the copy. Here a thread with its own connection runs a `PASSIVE` checkpoint (it never
 * waits for and never blocks a writer), with the same `synchronous=FULL`, whenever the WAL has
 * reached `minPages` at one of its looks every `intervalMs`. The store keeps SQLite's own
 * checkpoint as a backstop, at a size this thread keeps the WAL under.
 *
 * Once a checkpoint has copied the whole WAL, the next commit writes the WAL again from its start,
 * and with `synchronous=FULL` syncs its new header first: measured with `bench/dist/tail.js`
 * (issue 21), the commits that did were the slowest on the event loop (p50 6 to 44 times the
 * others'), and under a steady load a `PASSIVE` checkpoint rarely copies the whole WAL (commits
 * land while it runs), so the WAL grew on to the backstop, whose checkpoint runs inside a call's
 * commit. So after the `PASSIVE` copy the thread runs a `RESTART` checkpoint, which (with no busy
 * timeout) goes ahead only while no writer holds the lock, then holds off writers while it copies
 * what is left; and then makes the restarting commit itself: one row of `wal_restart`. The store's
 * writes wait for both as they wait for another process's, off the event loop. When a call's
 * commit gets the lock first, it restarts the WAL as before.
 *
 * The WAL's length is the wal-index header's `mxFrame` (offset 16 of the `-shm` file, which every
 * connection of the database maps; https://sqlite.org/walformat.html): a read of 4 bytes, where
 * asking SQLite (`wal_checkpoint`) would checkpoint. A torn or stale read only moves a checkpoint
 * by one look.
 */
export class SqliteCheckpointer {
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private stopping: Promise<void> | undefined;

  constructor(databasePath: string, options: SqliteCheckpointerOptions) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { databasePath, intervalMs: options.intervalMs, minPages: options.minPages },
    });
    this.exited = new Promise((resolve) => this.worker.once('exit', () => resolve()));
    // A checkpoint that fails (disk full) is retried at the next tick; the backstop stays.
    this.worker.on('error', () => undefined);
    this.worker.unref();
  }

  /**
   * Asks the thread to stop and waits until it has: it finishes the step it is in, closes its
   * connection and ends by itself. `worker.terminate()` while the thread was inside a native
   * better-sqlite3 call could leave `keybrake serve` stuck on SIGTERM (its main thread waiting in a
   * futex; better-sqlite3 issue #1507 is the same kind of failure), so it is only the last resort,
   * after {@link STOP_WAIT_MS}, for a thread that does not answer.
   */
  stop(): Promise<void> {
    this.stopping ??= this.stopThread();
    return this.stopping;
  }

  private async stopThread(): Promise<void> {
    // Keeps the process alive until the thread has gone (it is unref'd while it runs).
    this.worker.ref();
    this.worker.postMessage('stop');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), STOP_WAIT_MS);
    });
    const answer = await Promise.race([this.exited.then(() => 'exited' as const), late]);
    clearTimeout(timer);
    if (answer === 'late') await this.worker.terminate();
  }
}

/**
 * How long {@link SqliteCheckpointer.stop} waits for the thread to end by itself: a checkpoint
 * step is a few milliseconds here (tens on a slow disk), so a thread still there after this is stuck.
 */
const STOP_WAIT_MS = 10_000;

const WORKER_SOURCE = `
const { closeSync, openSync, readSync } = require('node:fs');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(${JSON.stringify(createRequire(import.meta.url).resolve('better-sqlite3'))});
const db = new Database(workerData.databasePath, { timeout: 0 });
db.pragma('synchronous = FULL');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');
// With timeout 0 it runs as PASSIVE when a writer holds the lock or a reader is on an older snapshot (busy: 1).
const finish = db.prepare('PRAGMA wal_checkpoint(RESTART)');
const begin = db.prepare('BEGIN IMMEDIATE');
const restart = db.prepare('INSERT OR REPLACE INTO wal_restart (id, at) VALUES (0, ?)');
const commit = db.prepare('COMMIT');
const rollback = db.prepare('ROLLBACK');
const header = Buffer.alloc(4);
let shm = -1;
/** Pages in the WAL, or Infinity when the wal-index cannot be read (then every look checkpoints). */
const walPages = () => {
  try {
    if (shm < 0) shm = openSync(workerData.databasePath + '-shm', 'r');
    return readSync(shm, header, 0, 4, 16) === 4 ? header.readUInt32LE(0) : Infinity;
  } catch {
    if (shm >= 0) closeSync(shm);
    shm = -1;
    return Infinity;
  }
};
const timer = setInterval(() => {
  if (walPages() < workerData.minPages) return;
  try {
    checkpoint.get();
    const { busy, log, checkpointed } = finish.get();
    if (busy === 0 && log > 0 && checkpointed === log) {
      begin.run();
      restart.run(Date.now());
      commit.run();
    }
  } catch {
    // Busy (a writer holds the lock, another process is checkpointing) or failing: the next look tries again.
    if (db.inTransaction) rollback.run();
  }
}, workerData.intervalMs);
// Stop: between two steps (a message never interrupts one), close the connection and let the
// thread end by itself, with nothing left to run.
parentPort.once('message', () => {
  clearInterval(timer);
  try {
    if (db.inTransaction) rollback.run();
    db.close();
  } catch {
    // Closing a connection that failed: the thread ends all the same.
  }
  if (shm >= 0) closeSync(shm);
  parentPort.close();
});
`;
