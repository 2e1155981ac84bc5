import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { closeOpenedAfterEach, opened, reachable, testArchiver } from './store-backends.js';
import type { Archiver, ArchiverOptions } from '../src/archive/archiver.js';
import { DirectorySink } from '../src/archive/directory-sink.js';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { RedisStore } from '../src/store/redis/redis-store.js';
import type { AuditInput, Store, VaultKeyRecord } from '../src/store/store.js';
import { testAuditInput, testKeyRecord } from './store-fixtures.js';

/**
 * Regression: issue 23 (CI red: the archiver fell behind on Redis under load). The trim refused to
 * run while a sealer held the sealer lock, waited up to 200 × 5 ms per slice, then gave up and
 * ended the round; two replicas sealing under load held the lock nearly all the time, so whole
 * segments stayed live and Redis grew (the soak beside two busy loops: 3 segments in 30 s, lag
 * 20 s). A trim and a seal now never touch the same entries (positions counted from the first
 * record ever): the trim makes progress with the lock held, and every record stays where the
 * sealer, `calls` and `verify` expect it. On Redis Cluster the families' lists are trimmed too.
 */

closeOpenedAfterEach();

const T0 = Date.parse('2026-06-01T12:00:00.000Z');
const signer = CheckpointSigner.fromPem(CheckpointSigner.generatePem());

const keyRecord = (keyId: string): VaultKeyRecord => testKeyRecord(keyId, T0);

const record = (i: number, keyId: string | null): AuditInput =>
  testAuditInput(keyId, T0 + i * 1000, { costMicros: 1000 * i, vendorRequestId: `req_${i}` });

const BACKENDS = [
  { name: 'one Redis', url: () => inject('redisUrl') },
  { name: 'a Redis Cluster', url: () => inject('redisClusterUrl') },
] as const;

/** A raw client under the store's prefix, to hold the sealer lock and to read list lengths. */
function rawClient(url: string, prefix: string): Redis | Cluster {
  const match = /^redis\+cluster:\/\/(.+)$/.exec(url);
  const client = match
    ? new Cluster(
        (match[1] as string).split(',').map((seed) => ({
          host: seed.split(':')[0] as string,
          port: Number(seed.split(':')[1]),
        })),
        { keyPrefix: prefix },
      )
    : new Redis(url, { keyPrefix: prefix });
  opened.push({ close: async () => void client.disconnect() });
  return client;
}

function archiverOf(store: Store, overrides: Partial<ArchiverOptions> = {}): Archiver {
  const sink = new DirectorySink(mkdtempSync(join(tmpdir(), 'keybrake-i23-trim-')));
  return testArchiver({ store, sink, signer, ...overrides });
}

/** Every live record of each key, from `calls`, checked against the live chain's own entries. */
async function expectCallsMatchChain(store: Store, keys: readonly string[]): Promise<void> {
  const state = await store.archiveState();
  const live = await store.readAudit(state.trimmedThrough, 1_000_000);
  for (const keyId of keys) {
    const fromChain = live
      .filter((entry) => (JSON.parse(entry.record) as { key_id: string | null }).key_id === keyId)
      .map((entry) => entry.seq);
    const calls = await store.listCalls(keyId);
    expect(calls.map((call) => call.seq)).toEqual(fromChain);
  }
}

describe.each(BACKENDS)('issue 23: the archive trim beside a busy sealer, on $name', ({ url }) => {
  it('trims archived records while another sealer holds the lock, and the sealer goes on where it was', async () => {
    const prefix = `t:${randomUUID()}:`;
    const store = await reachable(new RedisStore({ url: url(), prefix }));
    const raw = rawClient(url(), prefix);
    const keys = [`vk_${randomUUID()}`, `vk_${randomUUID()}`];
    for (const keyId of keys) await store.createKey(keyRecord(keyId));
    for (let i = 1; i <= 40; i += 1) await store.appendAudit(record(i, i % 5 === 0 ? null : (keys[i % 2] as string)));
    expect((await store.completeAuditHead()).records).toBe(40);

    // Another replica's sealer holds the lock for the whole round (a long seal on a stalled loop).
    await raw.set('{audit}:lock', 'another-replica', 'PX', 60_000);
    const archiver = archiverOf(store);
    for (let round = 0; round < 3; round += 1) expect((await archiver.runOnce()).kind).toBe('archived');
    const state = await store.archiveState();
    expect(state.archivedThrough).toBe(30);
    // Every archived record is gone from the live store, not only recorded as archived.
    expect(state.trimmedThrough).toBe(30);
    expect((await store.readAudit(0, 1))[0]?.seq).toBe(31);
    // Each family's list and its seqs list hold only live records (on Cluster too).
    const liveEntries = await store.readAudit(30, 100);
    expect(liveEntries).toHaveLength(10);
    for (const keyId of keys) {
      const liveOfKey = liveEntries.filter(
        (entry) => (JSON.parse(entry.record) as { key_id: string | null }).key_id === keyId,
      ).length;
      expect(await raw.llen(`{vk:${keyId}}:audit`)).toBe(liveOfKey);
      expect(await raw.llen(`{audit}:sealed:${keyId}`)).toBe(liveOfKey);
    }

    // The lock freed, the sealer seals what came meanwhile at the right places.
    await raw.del('{audit}:lock');
    for (let i = 41; i <= 60; i += 1) await store.appendAudit(record(i, i % 5 === 0 ? null : (keys[i % 2] as string)));
    expect((await store.completeAuditHead()).records).toBe(60);
    expect(await store.auditMissing()).toBe(0);
    await expectCallsMatchChain(store, keys);
    const entries = await store.readAudit(30, 100);
    expect(entries.map((entry) => entry.seq)).toEqual(Array.from({ length: 30 }, (_, i) => 31 + i));
  });

  it('archives and trims while a stream of calls keeps two sealers busy: nothing lost, nothing sealed twice', async () => {
    const prefix = `t:${randomUUID()}:`;
    // Two replicas' stores, each sealing every few ms with a short lock (as under load).
    const stores = [
      await reachable(new RedisStore({ url: url(), prefix, sealIntervalMs: 5, sealLockTtlMs: 200 })),
      await reachable(new RedisStore({ url: url(), prefix, sealIntervalMs: 5, sealLockTtlMs: 200 })),
    ] as const;
    const keys = [`vk_${randomUUID()}`, `vk_${randomUUID()}`, `vk_${randomUUID()}`];
    for (const keyId of keys) await stores[0].createKey(keyRecord(keyId));
    const archiver = archiverOf(stores[0], { segmentRecords: 50, trimSlice: 20 });
    let written = 0;
    let stop = false;
    const writers = [0, 1].map(async (w) => {
      for (let n = 0; !stop || n < 10; n += 1) {
        const i = (written += 1);
        await stores[w]!.appendAudit(record(i, i % 7 === 0 ? null : (keys[i % 3] as string)));
        // Sealing on demand too, as `calls` and `verify` do.
        if (n % 10 === 0) await stores[w]!.auditHead();
      }
    });
    let trimmedWhileWriting = 0;
    for (let round = 0; round < 200 && trimmedWhileWriting < 150; round += 1) {
      await archiver.runOnce().catch(() => undefined);
      trimmedWhileWriting = (await stores[1].archiveState()).trimmedThrough;
    }
    stop = true;
    await Promise.all(writers);
    expect(trimmedWhileWriting).toBeGreaterThanOrEqual(150);

    for (const store of stores) {
      expect((await store.completeAuditHead()).records).toBe(written);
      expect(await store.auditMissing()).toBe(0);
      await expectCallsMatchChain(store, keys);
    }
    // Each record once in the live chain, contiguous after the trimmed ones.
    const state = await stores[1].archiveState();
    const live = await stores[1].readAudit(state.trimmedThrough, 1_000_000);
    expect(live.map((entry) => entry.seq)).toEqual(
      Array.from({ length: written - state.trimmedThrough }, (_, i) => state.trimmedThrough + 1 + i),
    );
    expect(new Set(live.map((entry) => entry.record)).size).toBe(live.length);
  });
});
