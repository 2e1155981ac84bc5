/**
 * The embedded store's cost per commit, outside the HTTP harness and outside vitest (issue 21).
 *
 * `node bench/dist/store-commit.js [--calls=N] [--rounds=R] [--dir=PATH] [--against=CHECKOUT]`
 *
 * Opens the real `SqliteStore` (from `core-proxy/dist`, so build first; with `--against`, also the
 * one built in another checkout, e.g. `~/.cache/keybrake/bench-against/<commit>`) in a fresh
 * folder under `--dir` and makes `--calls` calls in sequence, as the proxy makes them:
 * `findKeyByHash`, `reserve`, then `settle` with its audit record and the PaymentIntent it created
 * (two durable commits). It
 * prints µs per commit for the first commits of a fresh file (while the WAL would grow) and for
 * the rest, CPU per call, the SQL statements each call runs (every `run`/`get`/`all` of a
 * prepared statement, transaction and savepoint statements included), the WAL frames each commit
 * appends (read from the wal-index in the `-shm` file), and the same calls' commit with its fsync
 * left out (`synchronous=OFF` on a second store in its own folder, for this measurement only): what
 * a commit costs besides its fsync. Beside it, the floor: a bare
 * 4 KiB write + fsync in the same folder, overwriting one block and appending to a growing file.
 * Rounds alternate the variants so that a shared machine's other load hits them alike; figures are
 * medians over rounds. Run it under `strace -f -T -e trace=fsync,pwrite64` to see each commit.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface StoreUnderTest {
  findKeyByHash(keyHash: string): Promise<unknown>;
  createKey(record: Record<string, unknown>): Promise<unknown>;
  reserve(input: Record<string, unknown>): Promise<{ kind: string }>;
  settle(input: Record<string, unknown>): Promise<boolean>;
  close(): Promise<void>;
}

type StoreClass = new (options: { dataDir: string }) => StoreUnderTest;

interface RunFigures {
  /** µs per commit, mean, of the first `FRESH_COMMITS`. */
  readonly fresh: number;
  /** µs per commit after them, mean and median. */
  readonly steady: number;
  readonly steadyMedian: number;
  /** µs per commit, 99th percentile over all commits. */
  readonly p99: number;
  /** CPU µs (user + system) per call. */
  readonly cpu: number;
  readonly statements: number;
  /** WAL frames (one page each, plus its 24-byte header) a reservation's and a settlement's commit appends, mean. */
  readonly reserveFrames: number;
  readonly settleFrames: number;
  /** µs per commit (median after the fresh ones) with the commit's fsync left out: `synchronous=OFF`, measurement only. */
  readonly noFsyncMedian: number;
}

const args = new Map(
  process.argv
    .slice(2)
    .map((arg) => arg.replace(/^--/, '').split('='))
    .map(([name, value]) => [name ?? '', value ?? 'true']),
);
const calls = Number(args.get('calls') ?? 1500);
const rounds = Number(args.get('rounds') ?? 5);
const baseDir = args.get('dir') ?? join(tmpdir(), 'keybrake-store-commit');
/** Commits counted as "fresh file": about where a growing WAL first reaches its checkpoint size. */
const FRESH_COMMITS = 400;
const KEY_HASH = 'h'.repeat(64);

/** Statements run so far, by every store loaded (see `loadStore`). */
let statements = 0;

/** The store built in a checkout, with the statements it runs counted. */
async function loadStore(checkout: string): Promise<StoreClass> {
  const Better = createRequire(join(checkout, 'core-proxy/package.json'))('better-sqlite3') as new (path: string) => {
    prepare(sql: string): object;
    close(): void;
  };
  const probe = new Better(':memory:');
  const statementPrototype = Object.getPrototypeOf(probe.prepare('SELECT 1')) as Record<string, unknown>;
  probe.close();
  for (const method of ['run', 'get', 'all', 'iterate']) {
    const original = statementPrototype[method] as ((...args: unknown[]) => unknown) & { counted?: boolean };
    if (original.counted) continue;
    const counted = Object.assign(
      function (this: unknown, ...callArgs: unknown[]): unknown {
        statements += 1;
        return original.apply(this, callArgs);
      },
      { counted: true },
    );
    statementPrototype[method] = counted;
  }
  const module = (await import(pathToFileURL(join(checkout, 'core-proxy/dist/store/sqlite-store.js')).href)) as {
    SqliteStore: StoreClass;
  };
  return module.SqliteStore;
}

const PENDING = {
  vendor: 'openai',
  method: 'POST',
  path: '/v1/chat/completions',
  idempotencyKey: null,
  agentRunLabel: 'bench',
  tainted: false,
};

/**
 * Frames in the WAL: `mxFrame` of the wal-index header (offset 16 of the `-shm` file, which SQLite
 * keeps current in its shared memory).
 */
function walFrameCounter(dataDir: string): { frames(): number; close(): void } {
  const fd = openSync(join(dataDir, 'keybrake.sqlite3-shm'), 'r');
  const buffer = Buffer.alloc(4);
  return {
    frames: () => (readSync(fd, buffer, 0, 4, 16), buffer.readUInt32LE(0)),
    close: () => closeSync(fd),
  };
}

/** Frames a commit appended, from the counts before and after it (a restarted WAL starts again at 0). */
function appended(before: number, after: number): number {
  return after >= before ? after - before : after;
}

async function storeRun(SqliteStore: StoreClass, dataDir: string, fsync = true): Promise<RunFigures> {
  const store = new SqliteStore({ dataDir });
  if (!fsync) (store as unknown as { db: { pragma(sql: string): unknown } }).db.pragma('synchronous = OFF');
  const keyId = 'vk_bench';
  const now = Date.now();
  await store.createKey({
    keyId,
    keyHash: KEY_HASH,
    vendor: 'openai',
    dailyCapMicros: null,
    capMicros: 1e15,
    allowedEndpoints: ['POST /v1/chat/completions'],
    agentRunLabel: 'bench',
    parentKeyId: null,
    tainted: false,
    createdAt: now,
    expiresAt: now + 3_600_000,
    revokedAt: null,
  });
  const times: number[] = [];
  const wal = walFrameCounter(dataDir);
  let reserveFrames = 0;
  let settleFrames = 0;
  const cpuStart = process.cpuUsage();
  const statementsBefore = statements;
  for (let i = 0; i < calls; i++) {
    const reservationId = `r${i}`;
    if (!(await store.findKeyByHash(KEY_HASH))) throw new Error('key not found');
    let frames = wal.frames();
    let start = process.hrtime.bigint();
    const reserved = await store.reserve({
      keyId,
      reservationId,
      costMicros: 1000,
      now: Date.now(),
      idempotency: null,
      sensitive: false,
      pending: { ...PENDING, keyId },
    });
    if (reserved.kind !== 'reserved') throw new Error(`reserve answered ${reserved.kind}`);
    times.push(Number(process.hrtime.bigint() - start) / 1e3);
    reserveFrames += appended(frames, (frames = wal.frames()));
    start = process.hrtime.bigint();
    const settled = await store.settle({
      keyId,
      reservationId,
      actualMicros: 900,
      idempotentResponse: null,
      // The PaymentIntent the answer created, recorded with the settlement as the proxy does.
      objects: [{ objectId: `pi_${i}`, state: { amount: 1000, currency: 'usd', bookedMicros: 900 } }],
      audit: {
        ...PENDING,
        keyId,
        at: new Date().toISOString(),
        outcome: 'forwarded',
        reason: null,
        status: 200,
        costMicros: 900,
        vendorRequestId: `req_${i}`,
      },
    });
    if (!settled) throw new Error('settle answered false');
    times.push(Number(process.hrtime.bigint() - start) / 1e3);
    settleFrames += appended(frames, wal.frames());
  }
  const cpu = process.cpuUsage(cpuStart);
  wal.close();
  const callStatements = (statements - statementsBefore) / calls;
  await store.close();
  return {
    fresh: mean(times.slice(0, FRESH_COMMITS)),
    steady: mean(times.slice(FRESH_COMMITS)),
    steadyMedian: median(times.slice(FRESH_COMMITS)),
    p99: percentile(times, 0.99),
    cpu: (cpu.user + cpu.system) / calls,
    statements: callStatements,
    reserveFrames: reserveFrames / calls,
    settleFrames: settleFrames / calls,
    noFsyncMedian: fsync ? (await storeRun(SqliteStore, `${dataDir}-no-fsync`, false)).steadyMedian : Number.NaN,
  };
}

/** µs per bare 4 KiB write + fsync, overwriting one block and appending to a growing file. */
function bareFsync(dir: string): { overwrite: number; append: number } {
  const block = Buffer.alloc(4096, 1);
  const measure = (append: boolean): number => {
    const fd = openSync(join(dir, append ? 'append' : 'overwrite'), 'w+');
    writeSync(fd, block, 0, block.length, 0);
    fsyncSync(fd);
    const start = process.hrtime.bigint();
    for (let i = 1; i <= 500; i++) {
      writeSync(fd, block, 0, block.length, append ? i * block.length : 0);
      fsyncSync(fd);
    }
    const us = Number(process.hrtime.bigint() - start) / 1e3 / 500;
    closeSync(fd);
    return us;
  };
  return { overwrite: measure(false), append: measure(true) };
}

function mean(values: number[]): number {
  return values.reduce((sum, value) => sum + value, 0) / Math.max(1, values.length);
}

function percentile(values: number[], fraction: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))] ?? NaN;
}

function median(values: number[]): number {
  return percentile(values, 0.5);
}

const variants: { name: string; SqliteStore: StoreClass }[] = [
  { name: 'this tree', SqliteStore: await loadStore(new URL('../../', import.meta.url).pathname) },
];
const against = args.get('against');
if (against !== undefined) variants.push({ name: `against ${against}`, SqliteStore: await loadStore(against) });

mkdirSync(baseDir, { recursive: true });
const bare = { overwrite: [] as number[], append: [] as number[] };
const figures = variants.map(() => [] as RunFigures[]);
for (let round = 0; round < rounds; round++) {
  const dir = mkdtempSync(join(baseDir, 'run-'));
  try {
    const floor = bareFsync(dir);
    bare.overwrite.push(floor.overwrite);
    bare.append.push(floor.append);
    // Alternate which variant goes first, so that neither always follows the floor's fsyncs.
    const order = variants.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) figures[i]!.push(await storeRun(variants[i]!.SqliteStore, join(dir, `data-${i}`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const line = (name: string, values: number[], unit = 'µs'): string =>
  `  ${name.padEnd(44)} ${median(values).toFixed(1).padStart(8)} ${unit.padEnd(2)}  (rounds: ${values.map((v) => v.toFixed(0)).join(' ')})`;
console.log(`${calls} calls in sequence (${calls * 2} commits), ${rounds} rounds, in ${baseDir}; medians over rounds`);
console.log('floor');
console.log(line('bare 4 KiB overwrite + fsync', bare.overwrite));
console.log(line('bare 4 KiB append + fsync (file grows)', bare.append));
variants.forEach((variant, i) => {
  const runs = figures[i]!;
  console.log(variant.name);
  const rows: [string, (run: RunFigures) => number, string?][] = [
    [`commit, first ${FRESH_COMMITS} of a fresh file (mean)`, (run) => run.fresh],
    ['commit, after them (mean)', (run) => run.steady],
    ['commit, after them (median)', (run) => run.steadyMedian],
    ['commit, 99th percentile', (run) => run.p99],
    ['CPU per call (user + system)', (run) => run.cpu],
    ['commit without its fsync (median; synchronous=OFF)', (run) => run.noFsyncMedian],
    ['SQL statements per call', (run) => run.statements, ''],
    ['WAL frames per reservation commit', (run) => run.reserveFrames, ''],
    ['WAL frames per settlement commit', (run) => run.settleFrames, ''],
  ];
  for (const [name, figure, unit] of rows) console.log(line(name, runs.map(figure), unit));
});
