/**
 * The embedded store's cost per commit, outside the HTTP harness and outside vitest (issue 21).
 *
 * `node bench/dist/store-commit.js [--calls=N] [--rounds=R] [--dir=PATH] [--variants=a,b]`
 *
 * Each variant opens the real `SqliteStore` (from `core-proxy/dist`, so build first) in a fresh
 * folder under `--dir` and makes `--calls` calls in sequence, as the proxy makes them: `reserve`,
 * then `settle` with its audit record, each one durable commit. It prints µs per commit for the
 * first commits of a fresh file (while the WAL grows) and for the rest (the steady state), and
 * beside it the floor: a bare 4 KiB write + fsync in the same folder, overwriting and appending.
 * Rounds alternate the variants so that the other load of a shared machine hits them alike; the
 * figures are medians over the rounds. Run it under `strace -f -c -e trace=fsync,fdatasync,pwrite64`
 * to see what each commit does.
 */
import { closeSync, fsyncSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

interface StoreUnderTest {
  createKey(record: Record<string, unknown>): Promise<unknown>;
  reserve(input: Record<string, unknown>): Promise<{ kind: string }>;
  settle(input: Record<string, unknown>): Promise<boolean>;
  close(): Promise<void>;
}

type StoreClass = new (options: { dataDir: string }) => StoreUnderTest;

const args = new Map(
  process.argv
    .slice(2)
    .map((arg) => arg.replace(/^--/, '').split('='))
    .map(([name, value]) => [name ?? '', value ?? 'true']),
);
const calls = Number(args.get('calls') ?? 1500);
const rounds = Number(args.get('rounds') ?? 5);
const baseDir = args.get('dir') ?? join(tmpdir(), 'keybrake-store-commit');
/** Commits counted as "fresh file": about where the WAL first reaches its checkpoint size. */
const FRESH_COMMITS = 400;

const repoRoot = new URL('../../', import.meta.url);
const { SqliteStore } = (await import(
  pathToFileURL(join(repoRoot.pathname, 'core-proxy/dist/store/sqlite-store.js')).href
)) as { SqliteStore: StoreClass };

const PENDING = {
  keyId: '',
  vendor: 'openai',
  method: 'POST',
  path: '/v1/chat/completions',
  idempotencyKey: null,
  agentRunLabel: 'bench',
  tainted: false,
};

/** µs per commit of one run: the fresh file's first commits, then the rest. */
async function storeRun(
  dataDir: string,
): Promise<{ fresh: number; steady: number; median: number; cpu: number; user: number }> {
  const store = new SqliteStore({ dataDir });
  const keyId = 'vk_bench';
  const now = Date.now();
  await store.createKey({
    keyId,
    keyHash: 'h'.repeat(64),
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
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < calls; i++) {
    const reservationId = `r${i}`;
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
    start = process.hrtime.bigint();
    const settled = await store.settle({
      keyId,
      reservationId,
      actualMicros: 900,
      idempotentResponse: null,
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
  }
  const cpu = process.cpuUsage(cpuStart);
  await store.close();
  return {
    fresh: mean(times.slice(0, FRESH_COMMITS)),
    steady: mean(times.slice(FRESH_COMMITS)),
    median: median(times.slice(FRESH_COMMITS)),
    cpu: (cpu.user + cpu.system) / times.length,
    user: cpu.user / times.length,
  };
}

/** µs per bare 4 KiB write + fsync, overwriting one block and appending to a growing file. */
function bareFsync(dir: string): { overwrite: number; append: number } {
  const block = Buffer.alloc(4096, 1);
  const measure = (append: boolean): number => {
    const path = join(dir, append ? 'append' : 'overwrite');
    const fd = openSync(path, 'w+');
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

mkdirSync(baseDir, { recursive: true });
const results = {
  storeFresh: [] as number[],
  storeSteady: [] as number[],
  storeMedian: [] as number[],
  storeCpu: [] as number[],
  storeUser: [] as number[],
  overwrite: [] as number[],
  append: [] as number[],
};
for (let round = 0; round < rounds; round++) {
  const dir = mkdtempSync(join(baseDir, 'run-'));
  try {
    const bare = bareFsync(dir);
    results.overwrite.push(bare.overwrite);
    results.append.push(bare.append);
    const store = await storeRun(join(dir, 'data'));
    results.storeFresh.push(store.fresh);
    results.storeSteady.push(store.steady);
    results.storeMedian.push(store.median);
    results.storeCpu.push(store.cpu);
    results.storeUser.push(store.user);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
const line = (name: string, values: number[]): string =>
  `${name.padEnd(44)} ${median(values).toFixed(1).padStart(8)} µs  (${(1e6 / median(values)).toFixed(0)}/s; rounds: ${values.map((v) => v.toFixed(0)).join(' ')})`;
console.log(`${calls} calls in sequence (${calls * 2} commits), ${rounds} rounds, in ${baseDir}`);
console.log(line('bare 4 KiB overwrite + fsync', results.overwrite));
console.log(line('bare 4 KiB append + fsync (file grows)', results.append));
console.log(line(`store commit, first ${FRESH_COMMITS} of a fresh file`, results.storeFresh));
console.log(line('store commit, steady state (mean)', results.storeSteady));
console.log(line('store commit, steady state (median)', results.storeMedian));
console.log(line('store commit, CPU (user+system) per commit', results.storeCpu));
console.log(line('store commit, user CPU per commit', results.storeUser));
