import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { describe, expect, inject, it } from 'vitest';
import { closeOpenedAfterEach, reachable } from './store-backends.js';
import { Archiver } from '../src/archive/archiver.js';
import { DirectorySink } from '../src/archive/directory-sink.js';
import { ExpiryPurger } from '../src/archive/expiry-purger.js';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { RedisStore, type RedisStoreOptions } from '../src/store/redis/redis-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { AuditInput, ReserveInput, SettleInput, Store, VaultKeyRecord } from '../src/store/store.js';
import { testAuditInput, testKeyRecord, testReserveInput } from './store-fixtures.js';

/**
 * Issue 23: the removal of expired key families and of kept responses past their retention, on
 * the embedded store, one Redis and a Redis Cluster, through the `Store` interface: what is due
 * goes, what is live (a live family, a call in flight, audit records not yet archived) stays, and
 * a purge running beside calls loses nothing and never charges twice.
 */

closeOpenedAfterEach();

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const T0 = Date.parse('2026-06-01T12:00:00.000Z');
const RETENTION = 2 * HOUR;
const signer = CheckpointSigner.fromPem(CheckpointSigner.generatePem());

interface Backend {
  readonly name: 'embedded' | 'redis' | 'redis cluster';
  /** A fresh place (a directory, a prefix) for `open`. */
  place(): string;
  /** Opens the store at `place`: the same place is the same store, restarted. */
  open(place: string, options?: { retentionMs?: number; now?: () => number }): Promise<Store>;
}

function redisBackend(name: 'redis' | 'redis cluster', url: () => string): Backend {
  return {
    name,
    place: () => `t:${randomUUID()}:`,
    open: (prefix, options = {}) => {
      const storeOptions: RedisStoreOptions = {
        url: url(),
        prefix,
        ...(options.retentionMs === undefined ? {} : { idempotencyRetentionMs: options.retentionMs }),
      };
      return reachable(new RedisStore(storeOptions));
    },
  };
}

const BACKENDS: readonly Backend[] = [
  {
    name: 'embedded',
    place: () => mkdtempSync(join(tmpdir(), 'keybrake-i23-expiry-')),
    open: (dataDir, options = {}) =>
      reachable(
        new SqliteStore({
          dataDir,
          ...(options.retentionMs === undefined ? {} : { idempotencyRetentionMs: options.retentionMs }),
          ...(options.now === undefined ? {} : { now: options.now }),
        }),
      ),
  },
  redisBackend('redis', () => inject('redisUrl')),
  redisBackend('redis cluster', () => inject('redisClusterUrl')),
];

const keyRecord = (keyId: string, overrides: Partial<VaultKeyRecord> = {}): VaultKeyRecord =>
  testKeyRecord(keyId, T0, { capMicros: 100_000_000, ...overrides });

const auditInput = (keyId: string | null, overrides: Partial<AuditInput> = {}): AuditInput =>
  testAuditInput(keyId, T0 + 60_000, overrides);

const reserveInput = (keyId: string, now: number, overrides: Partial<ReserveInput> = {}): ReserveInput =>
  testReserveInput(keyId, now, overrides);

function settleInput(keyId: string, reservationId: string, overrides: Partial<SettleInput> = {}): SettleInput {
  return {
    keyId,
    reservationId,
    actualMicros: 1_000_000,
    idempotentResponse: null,
    audit: auditInput(keyId),
    ...overrides,
  };
}

/** A charge through the store, as the proxy makes one: reserve, then settle. */
async function charge(store: Store, keyId: string, now: number): Promise<void> {
  const reservation = reserveInput(keyId, now);
  expect(await store.reserve(reservation)).toMatchObject({ kind: 'reserved' });
  expect(await store.settle(settleInput(keyId, reservation.reservationId))).toBe(true);
}

/**
 * Archives and trims every record written so far: a key-less record is chained after them (the
 * archiver always keeps the chain's last record live), then every segment is cut.
 */
async function archiveAll(store: Store): Promise<void> {
  await store.completeAuditHead();
  await store.appendAudit(auditInput(null));
  const archiver = new Archiver({
    store,
    sink: new DirectorySink(mkdtempSync(join(tmpdir(), 'keybrake-i23-expiry-sink-'))),
    signer,
    liveRecords: 1,
    liveMs: 0,
    intervalMs: 60_000,
    segmentRecords: 1000,
  });
  try {
    await store.completeAuditHead();
    while ((await archiver.runOnce()).kind === 'archived');
  } finally {
    await archiver.stop();
  }
}

const AFTER = T0 + HOUR + RETENTION + 1;

describe.each(BACKENDS)('issue 23: removal of expired keys ($name)', (backend) => {
  it('removes a family past its retention with its spend, keeps a live one and one still inside its retention', async () => {
    const store = await backend.open(backend.place());
    const [root, child, grandchild, live, recent] = Array.from({ length: 5 }, () => `vk_${randomUUID()}`) as [
      string, string, string, string, string,
    ]; // prettier-ignore
    await store.createKey(keyRecord(root));
    await store.createKey(keyRecord(child, { parentKeyId: root }));
    await store.createKey(keyRecord(grandchild, { parentKeyId: child, expiresAt: T0 + HOUR / 2 }));
    await store.createKey(keyRecord(live, { expiresAt: T0 + 30 * DAY }));
    // Expired, but only just: inside its retention at AFTER.
    await store.createKey(keyRecord(recent, { expiresAt: AFTER - RETENTION + HOUR }));
    await charge(store, grandchild, T0 + 60_000);
    await charge(store, live, T0 + 60_000);
    await archiveAll(store);

    // Inside the retention nothing goes.
    const early = await store.purgeExpired({ now: T0 + HOUR + RETENTION - 1, keyRetentionMs: RETENTION, limit: 100 });
    expect(early).toMatchObject({ families: 0, keys: 0 });
    expect(await store.getKey(root, T0)).toBeDefined();

    const purged = await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 });
    expect(purged).toMatchObject({ families: 1, keys: 3, kept: 0, more: false });
    // The grandchild's day of spend, counted on all three keys.
    expect(purged.spendDays).toBe(3);
    for (const keyId of [root, child, grandchild]) {
      expect(await store.getKey(keyId, AFTER)).toBeUndefined();
      expect(await store.findKeyByHash(`hash-${keyId}`)).toBeUndefined();
      // A call with a removed key is refused as an unknown key, and reserves nothing.
      expect(await store.reserve(reserveInput(keyId, T0 + 60_000))).toEqual({
        kind: 'refused',
        code: 'invalid_vault_key',
      });
    }
    expect(await store.getKey(live, AFTER)).toMatchObject({ keyId: live, spentMicros: 1_000_000, reservedMicros: 0 });
    expect(await store.getKey(recent, AFTER)).toMatchObject({ keyId: recent });
    // The live key still charges, and its spend goes on from where it was.
    await charge(store, live, AFTER);
    expect(await store.getKey(live, AFTER)).toMatchObject({ spentMicros: 2_000_000 });
    // The key list no longer shows them.
    const listed = await store.listKeys({ sort: 'newest', limit: 100, after: null, now: AFTER });
    expect(listed.keys.map((entry) => entry.key.keyId).sort()).toEqual([live, recent].sort());
    // A second purge finds nothing more.
    expect(await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 0,
      keys: 0,
    });
  });

  it('keeps a family while its root is live, whatever its children (a child never outlives its parent)', async () => {
    const store = await backend.open(backend.place());
    const root = `vk_${randomUUID()}`;
    const child = `vk_${randomUUID()}`;
    await store.createKey(keyRecord(root, { expiresAt: T0 + 30 * DAY }));
    await store.createKey(keyRecord(child, { parentKeyId: root, expiresAt: T0 + HOUR }));
    await store.revokeKey(root, T0 + 2 * HOUR);
    const purged = await store.purgeExpired({ now: T0 + 10 * DAY, keyRetentionMs: RETENTION, limit: 100 });
    expect(purged).toMatchObject({ families: 0, keys: 0 });
    expect(await store.getKey(child, T0 + 10 * DAY)).toMatchObject({ keyId: child, revokedAt: T0 + 2 * HOUR });
    expect(await store.getKey(root, T0 + 10 * DAY)).toMatchObject({ keyId: root });
  });

  it('keeps a family while a call of it is in flight or its audit records are live, then removes it', async () => {
    const store = await backend.open(backend.place());
    const root = `vk_${randomUUID()}`;
    const child = `vk_${randomUUID()}`;
    await store.createKey(keyRecord(root));
    await store.createKey(keyRecord(child, { parentKeyId: root }));
    // Reserved just before the key expired, and not settled yet.
    const inFlight = reserveInput(child, T0 + HOUR - 1);
    expect(await store.reserve(inFlight)).toMatchObject({ kind: 'reserved' });
    expect(await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 0,
      kept: 1,
    });
    const settled = settleInput(child, inFlight.reservationId, {
      actualMicros: 700_000,
      audit: auditInput(child, { costMicros: 700_000 }),
    });
    expect(await store.settle(settled)).toBe(true);
    expect(await store.getKey(root, AFTER)).toMatchObject({ spentMicros: 700_000, reservedMicros: 0 });
    // The settled call's audit record is live: /calls still lists it, so the family stays.
    expect((await store.listCalls(child)).map((call) => call.cost_usd)).toEqual([0.7]);
    expect(await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 0,
      kept: 1,
    });
    await archiveAll(store);
    expect(await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 1,
      keys: 2,
      kept: 0,
    });
    expect(await store.getKey(child, AFTER)).toBeUndefined();
    // The audit chain is whole: removing keys never removes a record.
    expect((await store.auditHead()).records).toBe(2);
    expect(await store.auditMissing()).toBe(0);
  });

  it('removes at most `limit` families per call and says more are due', async () => {
    const store = await backend.open(backend.place());
    const roots = Array.from({ length: 7 }, () => `vk_${randomUUID()}`);
    for (const root of roots) await store.createKey(keyRecord(root));
    const first = await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 3 });
    expect(first).toMatchObject({ families: 3, more: true });
    const second = await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 3 });
    expect(second).toMatchObject({ families: 3, more: true });
    const third = await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 3 });
    expect(third).toMatchObject({ families: 1, more: false });
    for (const root of roots) expect(await store.getKey(root, AFTER)).toBeUndefined();
  });

  it('a purge beside calls on live keys loses no spend and charges nothing twice; a restart goes on', async () => {
    const place = backend.place();
    const store = await backend.open(place);
    const live = Array.from({ length: 3 }, () => `vk_${randomUUID()}`);
    const expired = Array.from({ length: 60 }, () => `vk_${randomUUID()}`);
    for (const keyId of live) await store.createKey(keyRecord(keyId, { expiresAt: T0 + 30 * DAY }));
    for (const keyId of expired) await store.createKey(keyRecord(keyId));
    const idempotent = reserveInput(live[0] as string, AFTER, { idempotency: { key: 'charge-1', fingerprint: 'f1' } });
    expect(await store.reserve(idempotent)).toMatchObject({ kind: 'reserved' });
    const response = { status: 200, headers: { 'request-id': 'req_1' }, body: 'e30=', vendorRequestId: 'req_1' };
    await store.settle(settleInput(live[0] as string, idempotent.reservationId, { idempotentResponse: response }));

    const calls = Array.from({ length: 90 }, (_, i) => charge(store, live[i % 3] as string, AFTER));
    const replays = Array.from({ length: 10 }, () =>
      store.reserve(reserveInput(live[0] as string, AFTER, { idempotency: { key: 'charge-1', fingerprint: 'f1' } })),
    );
    let removed = 0;
    const purging = (async () => {
      for (;;) {
        const purged = await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 7 });
        removed += purged.families;
        if (!purged.more) break;
      }
    })();
    await Promise.all([...calls, purging]);
    for (const replay of await Promise.all(replays)) expect(replay).toEqual({ kind: 'replay', response });
    expect(removed).toBe(60);
    // 30 charges of $1 each on each live key, plus the idempotent one once.
    expect(await store.getKey(live[0] as string, AFTER)).toMatchObject({ spentMicros: 31_000_000, reservedMicros: 0 });
    for (const keyId of live.slice(1))
      expect(await store.getKey(keyId, AFTER)).toMatchObject({ spentMicros: 30_000_000, reservedMicros: 0 });
    for (const keyId of expired) expect(await store.getKey(keyId, AFTER)).toBeUndefined();
    expect(await store.auditMissing()).toBe(0);

    await store.close();
    const again = await backend.open(place);
    const more = `vk_${randomUUID()}`;
    await again.createKey(keyRecord(more));
    expect(await again.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 1,
      keys: 1,
    });
    expect(await again.getKey(more, AFTER)).toBeUndefined();
    await charge(again, live[1] as string, AFTER);
    expect(await again.getKey(live[1] as string, AFTER)).toMatchObject({ spentMicros: 31_000_000 });
    expect(
      await again.reserve(
        reserveInput(live[0] as string, AFTER, { idempotency: { key: 'charge-1', fingerprint: 'f1' } }),
      ),
    ).toEqual({ kind: 'replay', response });
  });
});

/** Every place of a store that still names `ids`: Redis key names, or embedded rows by table. */
async function leftovers(backend: Backend, place: string, ids: readonly string[]): Promise<string[]> {
  if (backend.name === 'embedded') {
    const db = new Database(join(place, 'keybrake.sqlite3'), { readonly: true });
    try {
      const found: string[] = [];
      const tables: [string, string][] = [
        ['vault_keys', 'key_id'],
        ['daily_spend', 'key_id'],
        ['reservations', 'key_id'],
        ['idempotency', 'key_id'],
        ['key_stats', 'key_id'],
        ['key_alerts', 'key_id'],
        ['alert_outbox', 'key_id'],
        ['vendor_objects', 'family'],
      ];
      for (const [table, column] of tables) {
        for (const id of ids) {
          if (db.prepare(`SELECT 1 FROM ${table} WHERE ${column} = ?`).get(id)) found.push(`${table} ${id}`);
        }
      }
      return found;
    } finally {
      db.close();
    }
  }
  const raw = new Redis(inject('redisUrl'));
  try {
    const found: string[] = [];
    let cursor = '0';
    do {
      const [next, names] = await raw.scan(cursor, 'MATCH', `${place}*`, 'COUNT', 1000);
      cursor = next;
      for (const name of names.filter((candidate) => ids.some((id) => candidate.includes(id)))) {
        // Kept responses and tracked objects are not listed per family: they go by their own TTL
        // (the idempotency retention; 8 days), which must be there.
        const ttl = await raw.pttl(name);
        if (/}:(i|obj):/.test(name) && ttl > 0 && ttl <= 8 * DAY) continue;
        found.push(name);
      }
    } while (cursor !== '0');
    for (const index of ['newest', 'spent', 'headroom']) {
      for (const id of ids)
        if ((await raw.zscore(`${place}{list}:${index}`, id)) !== null) found.push(`${index} ${id}`);
    }
    for (const id of ids) {
      for (const field of [`c:${id}`, `h:${id}`, `r:${id}`])
        if ((await raw.hexists(`${place}{list}:stats`, field)) === 1) found.push(`stats ${field}`);
    }
    for (const id of ids) if ((await raw.zscore(`${place}{expiry}:roots`, id)) !== null) found.push(`roots ${id}`);
    for (const set of ['shards', 'audit-dirty']) {
      for (const id of ids) if ((await raw.sismember(`${place}${set}`, id)) === 1) found.push(`${set} ${id}`);
    }
    return found;
  } finally {
    raw.disconnect();
  }
}

describe.each(BACKENDS.slice(0, 2))('issue 23: nothing of a removed family is left ($name)', (backend) => {
  it('removes every row or key of the family: spend, limit counters, objects, idempotency, indexes (Redis: those with no TTL)', async () => {
    const place = backend.place();
    const store = await backend.open(place);
    const root = `vk_${randomUUID()}`;
    const child = `vk_${randomUUID()}`;
    const limits = { maxRequestsPerSecond: 5, maxRequestsPerMinute: 100, maxConcurrent: 2 };
    await store.createKey(keyRecord(root, { limits, alertFractions: [0.5] }));
    await store.createKey(keyRecord(child, { parentKeyId: root, limits }));
    await charge(store, child, T0 + 60_000);
    const idempotent = reserveInput(child, T0 + 120_000, { idempotency: { key: 'k1', fingerprint: 'f' } });
    expect(await store.reserve(idempotent)).toMatchObject({ kind: 'reserved' });
    await store.settle(
      settleInput(child, idempotent.reservationId, {
        idempotentResponse: { status: 200, headers: {}, body: 'e30=', vendorRequestId: null },
        objects: [{ objectId: 'pi_1', state: { amount: 100, currency: 'usd', bookedMicros: 1_000_000 } }],
      }),
    );
    // Another expired family, removed in the same call.
    await store.createKey(keyRecord(`vk_${randomUUID()}`));
    // A page of the key list digests the calls into each key's stats (removed with the key too).
    await store.listKeys({ sort: 'most_spent', limit: 100, after: null, now: T0 + 180_000 });
    await archiveAll(store);
    expect((await leftovers(backend, place, [root, child])).length).toBeGreaterThan(0);

    expect(await store.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 2,
      keys: 3,
    });
    expect(await leftovers(backend, place, [root, child])).toEqual([]);
  });
});

describe.each(BACKENDS.slice(0, 2))('issue 23: one purge at a time, under the archiver’s lease ($name)', (backend) => {
  it('a replica whose archiver holds the lease purges; another replica’s purger waits; with the archive off it takes the lease', async () => {
    const store = await backend.open(backend.place());
    const roots = Array.from({ length: 3 }, () => `vk_${randomUUID()}`);
    for (const root of roots) await store.createKey(keyRecord(root));
    const archiver = new Archiver({
      store,
      sink: new DirectorySink(mkdtempSync(join(tmpdir(), 'keybrake-i23-expiry-sink-'))),
      signer,
      liveRecords: 1000,
      liveMs: DAY,
      intervalMs: 60_000,
    });
    const purger = (holder: string | undefined) =>
      new ExpiryPurger({ store, holder, keyRetentionMs: RETENTION, intervalMs: 60_000, now: () => AFTER });
    try {
      // The archiver of replica A takes the lease in its round.
      expect(await archiver.runOnce()).toEqual({ kind: 'idle' });
      const other = purger(undefined);
      expect(await other.runOnce()).toEqual({ kind: 'not_leader' });
      expect(await store.getKey(roots[0] as string, AFTER)).toBeDefined();
      const mine = purger(archiver.holder);
      expect(await mine.runOnce()).toMatchObject({ kind: 'purged', families: 3 });
      expect(mine.snapshot()).toMatchObject({ leader: true, rounds: 1, purged: { families: 3, keys: 3 } });
      // The archiver's lease, renewed by the purge, is still the archiver's.
      expect(await archiver.runOnce()).toEqual({ kind: 'idle' });
      expect(await other.runOnce()).toEqual({ kind: 'not_leader' });
    } finally {
      await archiver.stop();
    }
    // The archiver gone (its lease given up): a purger with no archiver takes the lease itself.
    const alone = purger(undefined);
    expect(await alone.runOnce()).toMatchObject({ kind: 'purged', families: 0 });
    expect(alone.snapshot().leader).toBe(true);
    await alone.stop();
  });
});

describe('issue 23: removal of kept idempotent responses past their retention (embedded, clock moved)', () => {
  it('a response inside the retention replays; past it, the purge removes it and the key reaches the vendor again', async () => {
    let now = T0;
    const backend = BACKENDS[0] as Backend;
    const store = await backend.open(backend.place(), { retentionMs: DAY, now: () => now });
    const keyId = `vk_${randomUUID()}`;
    await store.createKey(keyRecord(keyId, { expiresAt: T0 + 7 * DAY }));
    const idem = { key: 'charge-a', fingerprint: 'f' };
    const first = reserveInput(keyId, now, { idempotency: idem });
    expect(await store.reserve(first)).toMatchObject({ kind: 'reserved' });
    const response = { status: 200, headers: {}, body: 'e30=', vendorRequestId: 'req_a' };
    await store.settle(settleInput(keyId, first.reservationId, { idempotentResponse: response }));

    now = T0 + DAY - 60_000;
    expect(await store.purgeExpired({ now, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      idempotentResponses: 0,
    });
    expect(await store.reserve(reserveInput(keyId, now, { idempotency: idem }))).toEqual({ kind: 'replay', response });

    // The kept responses are purged at most every 10 minutes (a walk of the whole table).
    now = T0 + DAY + 60_000;
    expect(await store.purgeExpired({ now, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      idempotentResponses: 0,
    });
    now = T0 + DAY + 11 * 60_000;
    expect(await store.purgeExpired({ now, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      idempotentResponses: 1,
    });
    expect(await store.reserve(reserveInput(keyId, now, { idempotency: idem }))).toMatchObject({ kind: 'reserved' });
  });
});

describe.each(BACKENDS.slice(1))('issue 23: kept idempotent responses past their retention ($name)', (backend) => {
  it('a response replays inside the retention and is gone past it (the Redis TTL)', async () => {
    const store = await backend.open(backend.place(), { retentionMs: 1500 });
    const keyId = `vk_${randomUUID()}`;
    const now = Date.now();
    await store.createKey(keyRecord(keyId, { createdAt: now, expiresAt: now + DAY }));
    const idem = { key: 'charge-a', fingerprint: 'f' };
    const first = reserveInput(keyId, now, { idempotency: idem });
    expect(await store.reserve(first)).toMatchObject({ kind: 'reserved' });
    const response = { status: 200, headers: {}, body: 'e30=', vendorRequestId: 'req_a' };
    await store.settle(settleInput(keyId, first.reservationId, { idempotentResponse: response }));
    expect(await store.reserve(reserveInput(keyId, now, { idempotency: idem }))).toEqual({ kind: 'replay', response });
    await sleep(2000);
    expect(await store.reserve(reserveInput(keyId, Date.now(), { idempotency: idem }))).toMatchObject({
      kind: 'reserved',
    });
  });
});

describe('issue 23: a Redis store written before the expiry index (one Redis)', () => {
  it('indexes the root keys it finds once, then removes the expired families', async () => {
    const backend = BACKENDS[1] as Backend;
    const prefix = backend.place();
    const store = await backend.open(prefix);
    const old = `vk_${randomUUID()}`;
    const oldChild = `vk_${randomUUID()}`;
    const live = `vk_${randomUUID()}`;
    await store.createKey(keyRecord(old));
    await store.createKey(keyRecord(oldChild, { parentKeyId: old }));
    await store.createKey(keyRecord(live, { expiresAt: T0 + 30 * DAY }));
    // As a store written before issue 23's index: no index, no mark.
    const raw = new Redis(inject('redisUrl'));
    try {
      await raw.del(`${prefix}{expiry}:roots`, `${prefix}{expiry}:indexed`);
    } finally {
      raw.disconnect();
    }
    await store.close();
    const restarted = await backend.open(prefix);
    expect(await restarted.purgeExpired({ now: AFTER, keyRetentionMs: RETENTION, limit: 100 })).toMatchObject({
      families: 1,
      keys: 2,
    });
    expect(await restarted.getKey(oldChild, AFTER)).toBeUndefined();
    expect(await restarted.getKey(live, AFTER)).toMatchObject({ keyId: live });
  });
});
