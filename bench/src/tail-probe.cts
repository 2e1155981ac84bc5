/**
 * What stalls `keybrake serve` (issue 21: the fixed-rate tail). Preloaded into the proxy by
 * `tail.ts` (`node --require bench/dist/tail-probe.cjs core-proxy/dist/cli.js serve`, with
 * `KEYBRAKE_TAIL_PROBE=<file>`); CommonJS so that `--require` loads it in the store's checkpointer
 * thread too. Appends one JSON line per event to the file, with epoch-ms timestamps taken from
 * `performance.timeOrigin` so that the threads' events line up:
 *
 * - `stall`: the main thread's event loop did not run a 1 ms timer for `ms` (> 2 ms), with the
 *   thread's run-queue wait over that time (`runq`, from `/proc/self/task/<pid>/schedstat`: the
 *   time it was ready to run while other processes had both cores, i.e. the machine's share);
 * - `gc`: every V8 pause (`kind` 1 scavenge, 2 minor mark-sweep, 4 mark-compact, 8 incremental,
 *   16 weak callbacks);
 * - `commit`: every `COMMIT` of a better-sqlite3 connection (the group commit): how long it
 *   blocked, its run-queue wait, how many reservations and audit records it made durable, the
 *   WAL frames it appended (the `-shm` wal-index header's `mxFrame`, before and after) and whether
 *   it restarted the WAL;
 * - `checkpoint`: every `PRAGMA wal_checkpoint` (the checkpointer thread's), with SQLite's answer;
 * - `second`: once a second, the heap, the new space's size and the event-loop delay's p99 / max;
 * - `clock`: once, at start, the monotonic clock (`process.hrtime`, V8's `--cpu-prof` timestamps)
 *   beside the epoch time, so that a CPU profile's samples line up with the stalls.
 *
 * Measurement only: never loaded by the proxy itself.
 */
/* eslint-disable @typescript-eslint/no-require-imports -- CommonJS on purpose: Node 20 runs `--require` modules in worker threads too, `--import` ones only in the main thread. */
import fs = require('node:fs');
import perfHooks = require('node:perf_hooks');
import v8 = require('node:v8');
import workerThreads = require('node:worker_threads');

const { closeSync, openSync, readSync, writeSync } = fs;
const { PerformanceObserver, monitorEventLoopDelay, performance } = perfHooks;
const { isMainThread, threadId } = workerThreads;

interface StatementLike {
  run(...args: unknown[]): unknown;
  get(...args: unknown[]): unknown;
  all(...args: unknown[]): unknown;
  readonly database: { readonly name: string };
}

const outPath = process.env.KEYBRAKE_TAIL_PROBE;
if (outPath) install(outPath);

function install(path: string): void {
  const origin = performance.timeOrigin;
  const now = (): number => origin + performance.now();
  const thread = isMainThread ? 'main' : `thread-${threadId}`;
  const events: Record<string, unknown>[] = [];
  const out = openSync(path, 'a');
  const flush = (): void => {
    if (events.length === 0) return;
    writeSync(out, `${events.map((event) => JSON.stringify({ thread, ...event })).join('\n')}\n`);
    events.length = 0;
  };
  setInterval(flush, 250).unref();
  process.on('exit', flush);

  const schedstat = isMainThread ? openSafely(`/proc/self/task/${process.pid}/schedstat`) : -1;
  const schedBuffer = Buffer.alloc(128);
  /** The main thread's run-queue wait so far, ms (schedstat's second field, updated at each switch). */
  const runQueueMs = (): number => {
    if (schedstat < 0) return 0;
    const length = readSync(schedstat, schedBuffer, 0, schedBuffer.length, 0);
    return Number(schedBuffer.toString('latin1', 0, length).split(' ')[1]) / 1e6;
  };

  patchSqlite(events, now, runQueueMs);
  if (!isMainThread) return;
  // The monotonic clock (V8's, of a `--cpu-prof` profile's timestamps) at one epoch time.
  events.push({ event: 'clock', t: now(), monoMs: Number(process.hrtime.bigint()) / 1e6 });

  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as unknown as { detail?: { kind?: number } }).detail;
      events.push({ event: 'gc', t: origin + entry.startTime, ms: entry.duration, kind: detail?.kind });
    }
  }).observe({ entryTypes: ['gc'] });

  let last = now();
  let lastRunQueue = runQueueMs();
  const tick = (): void => {
    const at = now();
    const runQueue = runQueueMs();
    if (at - last > 2) events.push({ event: 'stall', t: last, ms: at - last, runq: runQueue - lastRunQueue });
    last = at;
    lastRunQueue = runQueue;
    setTimeout(tick, 1).unref();
  };
  setTimeout(tick, 1).unref();

  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  setInterval(() => {
    const newSpace = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space');
    events.push({
      event: 'second',
      t: now(),
      heapBytes: process.memoryUsage().heapUsed,
      newSpaceBytes: newSpace?.space_size,
      loopDelayP99Ms: delay.percentile(99) / 1e6,
      loopDelayMaxMs: delay.max / 1e6,
    });
    delay.reset();
  }, 1000).unref();
}

function openSafely(path: string): number {
  try {
    return openSync(path, 'r');
  } catch {
    return -1;
  }
}

/** Times better-sqlite3's COMMITs and checkpoints, and counts what each commit made durable. */
function patchSqlite(events: Record<string, unknown>[], now: () => number, runQueueMs: () => number): void {
  let Database: { prototype: { prepare(sql: string): StatementLike } };
  try {
    // The proxy's own copy: resolved from the working directory (the checkout being measured).
    Database = require(require.resolve('better-sqlite3', { paths: [`${process.cwd()}/core-proxy`, process.cwd()] }));
  } catch {
    return;
  }
  const prepare = Database.prototype.prepare;
  let reservations = 0;
  let records = 0;
  const shm = new Map<string, number>();
  const frameBuffer = Buffer.alloc(4);
  /** `mxFrame` of the wal-index header (offset 16 of the `-shm` file): frames in the WAL. */
  const walFrames = (databasePath: string): number => {
    let fd = shm.get(databasePath);
    if (fd === undefined) {
      fd = openSafely(`${databasePath}-shm`);
      shm.set(databasePath, fd);
    }
    if (fd < 0 || readSync(fd, frameBuffer, 0, 4, 16) < 4) return Number.NaN;
    return frameBuffer.readUInt32LE(0);
  };
  process.on('exit', () => {
    for (const fd of shm.values()) if (fd >= 0) closeSync(fd);
  });
  Database.prototype.prepare = function (this: unknown, sql: string): StatementLike {
    const statement = prepare.call(this, sql);
    const text = sql.trim();
    const wrap = (method: 'run' | 'get', around: (call: () => unknown, self: StatementLike) => unknown): void => {
      const original = statement[method];
      statement[method] = function (this: StatementLike, ...args: unknown[]): unknown {
        return around(() => original.apply(this, args), this);
      };
    };
    if (text === 'BEGIN IMMEDIATE') {
      wrap('run', (call) => {
        reservations = 0;
        records = 0;
        return call();
      });
    } else if (text.startsWith('INSERT INTO reservations')) {
      wrap('run', (call) => ((reservations += 1), call()));
    } else if (text.startsWith('INSERT INTO audit ')) {
      wrap('run', (call) => ((records += 1), call()));
    } else if (text === 'COMMIT') {
      wrap('run', (call, self) => {
        const framesBefore = walFrames(self.database.name);
        const runQueueBefore = runQueueMs();
        const start = now();
        const result = call();
        const ms = now() - start;
        const framesAfter = walFrames(self.database.name);
        events.push({
          event: 'commit',
          t: start,
          ms,
          runq: runQueueMs() - runQueueBefore,
          reservations,
          records,
          // A WAL restarted by this commit (after a complete checkpoint) begins again at frame 1.
          frames: framesAfter >= framesBefore ? framesAfter - framesBefore : framesAfter,
          restarted: framesAfter < framesBefore,
          walBefore: framesBefore,
        });
        return result;
      });
    } else if (text.includes('wal_checkpoint')) {
      wrap('get', (call) => {
        const start = now();
        try {
          const answer = call();
          events.push({ event: 'checkpoint', t: start, ms: now() - start, answer });
          return answer;
        } catch (error) {
          events.push({ event: 'checkpoint', t: start, ms: now() - start, error: (error as { code?: string }).code });
          throw error;
        }
      });
    }
    return statement;
  };
}
