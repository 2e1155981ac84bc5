import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, inject } from 'vitest';
import { Archiver, type ArchiverOptions } from '../src/archive/archiver.js';
import { RedisStore } from '../src/store/redis/redis-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { Store } from '../src/store/store.js';

/**
 * The three stores the store-level tests hold to one contract, opened through the `Store`
 * interface: the embedded store in a fresh directory, one real Redis and a real Redis Cluster
 * (started by `global-setup-redis.ts`), each Redis store under a prefix of its own.
 */
export interface StoreBackend {
  readonly name: 'embedded' | 'redis' | 'redis cluster';
  open(): Promise<Store>;
}

/** What the running test opened; `closeOpenedAfterEach` closes it after every test. */
export const opened: { close(): Promise<void> }[] = [];

/** Registers, in the calling test file, the hook that closes what each test opened. */
export function closeOpenedAfterEach(): void {
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((thing) => thing.close()));
  });
}

/** The store once it answers a ping (a fresh Redis connection may take a moment), closed after the test. */
export async function reachable(store: Store): Promise<Store> {
  opened.push(store);
  for (let attempt = 0; ; attempt += 1) {
    try {
      await store.ping();
      return store;
    } catch (error) {
      if (attempt > 200) throw error;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }
}

/**
 * The archive tests' archiver over `options.store`, closed after the test: a live window of the
 * newest 5 records (records are never too young), segments of 10 records, trims of 3, rounds a
 * minute apart; `options` sets the sink and signer and may change any of these.
 */
export function testArchiver(
  options: Pick<ArchiverOptions, 'store' | 'sink' | 'signer'> & Partial<ArchiverOptions>,
): Archiver {
  const archiver = new Archiver({
    liveRecords: 5,
    liveMs: 10 * 365 * 24 * 3_600_000,
    intervalMs: 60_000,
    segmentRecords: 10,
    trimSlice: 3,
    ...options,
  });
  opened.push({ close: () => archiver.stop() });
  return archiver;
}

/** The three backends; `dirPrefix` names the embedded store's temporary directories. */
export function storeBackends(dirPrefix: string): readonly StoreBackend[] {
  return [
    { name: 'embedded', open: () => reachable(new SqliteStore({ dataDir: mkdtempSync(join(tmpdir(), dirPrefix)) })) },
    { name: 'redis', open: () => reachable(new RedisStore({ url: inject('redisUrl'), prefix: `t:${randomUUID()}:` })) },
    {
      name: 'redis cluster',
      open: () => reachable(new RedisStore({ url: inject('redisClusterUrl'), prefix: `t:${randomUUID()}:` })),
    },
  ];
}
