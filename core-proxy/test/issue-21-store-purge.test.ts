import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ReserveInput, StoredResponse } from '../src/index.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { testAuditInput, testKeyRecord, testReserveInput } from './store-fixtures.js';

/**
 * Issue 21: the embedded store's purge of kept idempotent responses. It was one `DELETE` scanning
 * the whole table on the event loop, holding the write lock, at start-up and every 10 minutes: a
 * day of kept responses stalled every call for seconds. It now runs in slices of the table, each
 * its own write, group-committed with the calls of its turn of the event loop.
 */

const HOUR = 3_600_000;
const T0 = Date.parse('2026-06-01T12:00:00.000Z');
/** More than two of the purge's slices (500 rows each), so that it takes three writes at least. */
const EXPIRED = 1_200;
const FRESH = 10;

const response: StoredResponse = {
  status: 200,
  headers: { 'content-type': 'application/json' },
  body: 'e30=',
  vendorRequestId: 'req_1',
};

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function reserveInput(keyId: string, idempotencyKey: string, now: number): ReserveInput {
  return testReserveInput(keyId, now, { costMicros: 1, idempotency: { key: idempotencyKey, fingerprint: 'f' } });
}

/** A call with an idempotency key, answered and its response kept (at the store's clock). */
async function keptCall(store: SqliteStore, keyId: string, idempotencyKey: string, now: number): Promise<void> {
  const input = reserveInput(keyId, idempotencyKey, now);
  expect((await store.reserve(input)).kind).toBe('reserved');
  const settled = await store.settle({
    keyId,
    reservationId: input.reservationId,
    actualMicros: 1,
    idempotentResponse: response,
    audit: testAuditInput(keyId, now, { costMicros: 1, vendorRequestId: 'req_1', idempotencyKey }),
  });
  expect(settled).toBe(true);
}

/** Idempotency keys in the order of the table's primary key: the purge's order. */
const idempotencyKey = (i: number): string => `k-${String(i).padStart(5, '0')}`;

describe('issue 21: the embedded store purges kept responses in slices', () => {
  it('answers a call made while the purge runs before the purge ends, and the purge still removes every expired response', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i21-purge-'));
    dirs.push(dataDir);
    const keyId = randomUUID();
    let clock = T0;
    const first = new SqliteStore({ dataDir, now: () => clock });
    await first.createKey(testKeyRecord(keyId, T0 - HOUR, { expiresAt: T0 + 48 * HOUR }));
    // Concurrent calls share group commits: the table fills in a few commits.
    await Promise.all(Array.from({ length: EXPIRED }, (_, i) => keptCall(first, keyId, idempotencyKey(i), T0)));
    clock = T0 + 2 * HOUR;
    await Promise.all(
      Array.from({ length: FRESH }, (_, i) => keptCall(first, keyId, idempotencyKey(EXPIRED + i), clock)),
    );
    await first.close();

    // 25 hours after the first calls: those responses are past the 24 hours kept, the last ten are not.
    const now = T0 + 25 * HOUR;
    const second = new SqliteStore({ dataDir, now: () => now });
    try {
      // Issued in the turn the store opens in, as its purge's first slice is: written in the same
      // commit, after that slice. The last expired response lies in the purge's last slice, so it
      // is still kept: the call did not wait for the whole purge (it did, when one DELETE
      // purged everything before the store took any call).
      const lastExpired = reserveInput(keyId, idempotencyKey(EXPIRED - 1), now);
      expect(await second.reserve(lastExpired)).toEqual({ kind: 'replay', response });

      // Later calls see the purge reach the end of the table: the last slice ends it. Each answer
      // before that is a replay (which writes nothing); one call per commit at most.
      let replays = 0;
      for (;;) {
        const answer = await second.reserve({ ...lastExpired, reservationId: randomUUID() });
        if (answer.kind !== 'replay') {
          expect(answer.kind).toBe('reserved');
          break;
        }
        replays += 1;
        expect(replays).toBeLessThan(EXPIRED);
      }
      const kinds = (from: number, to: number): Promise<string[]> =>
        Promise.all(
          Array.from({ length: to - from }, (_, i) =>
            second.reserve(reserveInput(keyId, idempotencyKey(from + i), now)).then((answer) => answer.kind),
          ),
        );
      // Every expired response was purged (a new call may use its key); every fresh one replays.
      expect(new Set(await kinds(0, EXPIRED - 1))).toEqual(new Set(['reserved']));
      expect(await kinds(EXPIRED, EXPIRED + FRESH)).toEqual(Array.from({ length: FRESH }, () => 'replay'));
    } finally {
      await second.close();
    }
  });
});
