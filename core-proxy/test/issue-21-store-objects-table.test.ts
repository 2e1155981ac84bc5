import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { testKeyRecord } from './store-fixtures.js';

/**
 * Issue 21: the embedded store's table of tracked vendor objects is `WITHOUT ROWID` (one b-tree
 * instead of the table and the index of its key: one WAL frame less in the settlement that records
 * a created PaymentIntent). A data folder written before it has the rowid table: opening it
 * converts the table, and every object and claim in it is kept.
 */

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function storeWithKey(dataDir: string, keyId: string): Promise<SqliteStore> {
  const store = new SqliteStore({ dataDir });
  await store.createKey(testKeyRecord(keyId, Date.now(), { keyHash: `${keyId}-hash`, capMicros: 100_000_000 }));
  return store;
}

describe('issue 21: the embedded store keeps vendor objects in a WITHOUT ROWID table', () => {
  it('converts a data folder written with the rowid table, keeping every object and its claim', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-objects-'));
    dirs.push(dataDir);
    const keyId = 'vk_objects';
    let store = await storeWithKey(dataDir, keyId);
    await store.recordObject({
      keyId,
      objectId: 'pi_1',
      state: { amount: 1200, currency: 'usd', bookedMicros: 12_000_000 },
    });
    await store.recordObject({
      keyId,
      objectId: 'pi_2',
      state: { amount: 300, currency: 'eur', bookedMicros: 3_000_000 },
    });
    const now = Date.now();
    expect(
      await store.claimObject({ keyId, objectId: 'pi_2', claimId: 'c1', now, until: now + 600_000 }),
    ).toMatchObject({
      kind: 'claimed',
    });
    await store.close();

    // The table as an earlier version wrote it: a rowid table with its key as an index.
    const file = join(dataDir, 'keybrake.sqlite3');
    const db = new Database(file);
    db.exec(`
      CREATE TABLE old_objects (family TEXT NOT NULL, object_id TEXT NOT NULL, amount INTEGER, currency TEXT,
        booked INTEGER NOT NULL DEFAULT 0, claim_id TEXT, claim_until INTEGER, PRIMARY KEY (family, object_id));
      INSERT INTO old_objects SELECT family, object_id, amount, currency, booked, claim_id, claim_until FROM vendor_objects;
      DROP TABLE vendor_objects;
      ALTER TABLE old_objects RENAME TO vendor_objects;`);
    expect(tableSql(db)).not.toMatch(/WITHOUT ROWID/i);
    db.close();

    store = new SqliteStore({ dataDir });
    try {
      // pi_1 as recorded; pi_2 still claimed by c1 (busy for another claim), then released with its state.
      const later = Date.now();
      expect(await store.claimObject({ keyId, objectId: 'pi_1', claimId: 'c2', now: later, until: later + 1 })).toEqual(
        {
          kind: 'claimed',
          state: { amount: 1200, currency: 'usd', bookedMicros: 12_000_000 },
        },
      );
      expect(await store.claimObject({ keyId, objectId: 'pi_2', claimId: 'c3', now: later, until: later + 1 })).toEqual(
        {
          kind: 'busy',
        },
      );
    } finally {
      await store.close();
    }
    const reopened = new Database(file, { readonly: true });
    expect(tableSql(reopened)).toMatch(/WITHOUT ROWID/i);
    expect((reopened.prepare('SELECT count(*) AS n FROM vendor_objects').get() as { n: number }).n).toBe(2);
    reopened.close();
  });
});

function tableSql(db: Database.Database): string {
  return (
    db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'vendor_objects'").get() as {
      sql: string;
    }
  ).sql;
}
