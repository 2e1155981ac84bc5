import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { type AuditRecordJson, chainHash, GENESIS_HASH } from '../src/audit/chain.js';
import { canonicalJson } from '../src/audit/canonical-json.js';
import { TEST_STORE, type TestProxy, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';
import { CLI } from './server-process.js';

const run = promisify(execFile);

/** One chain entry as an attacker with write access to the store sees it. */
interface Entry {
  record: AuditRecordJson;
  prevHash: string;
  hash: string;
  /** Redis only: the record id the sealer keeps. */
  rid?: string;
}

/**
 * Direct write access to the store behind a running proxy, as an attacker with disk or Redis
 * access has: read the chain, write any chain back (the Redis head is moved to match, the strongest
 * attacker), and read or replace the checkpoints.
 */
interface StoreAccess {
  read(): Promise<Entry[]>;
  write(entries: Entry[]): Promise<void>;
  checkpoints(): Promise<Record<string, unknown>[]>;
  writeCheckpoints(checkpoints: Record<string, unknown>[]): Promise<void>;
}

function sqliteAccess(proxy: TestProxy): StoreAccess {
  const open = (): Database.Database => new Database(join(proxy.dataDir, 'keybrake.sqlite3'));
  const withDb = <T>(body: (db: Database.Database) => T): T => {
    const db = open();
    try {
      return body(db);
    } finally {
      db.close();
    }
  };
  return {
    read: async () =>
      withDb((db) =>
        (db.prepare('SELECT record, prev_hash, hash FROM audit ORDER BY seq').all() as Record<string, string>[]).map(
          (row) => ({
            record: JSON.parse(row.record as string),
            prevHash: row.prev_hash as string,
            hash: row.hash as string,
          }),
        ),
      ),
    write: async (entries) =>
      withDb((db) =>
        db.transaction(() => {
          db.exec('DELETE FROM audit');
          const insert = db.prepare('INSERT INTO audit (seq, key_id, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?)');
          entries.forEach((entry, i) =>
            insert.run(i + 1, entry.record.key_id, canonicalJson(entry.record), entry.prevHash, entry.hash),
          );
        })(),
      ),
    checkpoints: async () =>
      withDb((db) =>
        (db.prepare('SELECT checkpoint FROM audit_checkpoints ORDER BY records').all() as { checkpoint: string }[]).map(
          (row) => JSON.parse(row.checkpoint),
        ),
      ),
    writeCheckpoints: async (checkpoints) =>
      withDb((db) => {
        db.exec('DELETE FROM audit_checkpoints');
        const insert = db.prepare('INSERT INTO audit_checkpoints (records, checkpoint) VALUES (?, ?)');
        for (const checkpoint of checkpoints) insert.run(checkpoint.records, JSON.stringify(checkpoint));
      }),
  };
}

function redisAccess(proxy: TestProxy): StoreAccess {
  const redis = new Redis(inject('redisUrl'), { keyPrefix: proxy.redisPrefix });
  onTestFinished(() => redis.disconnect());
  return {
    read: async () =>
      (await redis.lrange('{audit}:chain', 0, -1)).map((raw) => {
        const entry = JSON.parse(raw);
        return { record: JSON.parse(entry.record), prevHash: entry.prev, hash: entry.hash, rid: entry.rid };
      }),
    write: async (entries) => {
      const multi = redis.multi().del('{audit}:chain');
      if (entries.length > 0) {
        multi.rpush(
          '{audit}:chain',
          ...entries.map((entry, i) =>
            JSON.stringify({
              seq: i + 1,
              rid: entry.rid,
              record: canonicalJson(entry.record),
              prev: entry.prevHash,
              hash: entry.hash,
            }),
          ),
        );
      }
      multi.hset('{audit}:head', 'seq', entries.length, 'hash', entries.at(-1)?.hash ?? '');
      await multi.exec();
    },
    checkpoints: async () =>
      Object.values(await redis.hgetall('{audit}:checkpoints'))
        .map((raw) => JSON.parse(raw))
        .sort((a, b) => a.records - b.records),
    writeCheckpoints: async (checkpoints) => {
      await redis.del('{audit}:checkpoints');
      for (const checkpoint of checkpoints) {
        await redis.hset('{audit}:checkpoints', String(checkpoint.records), JSON.stringify(checkpoint));
      }
    },
  };
}

/** Recomputes every hash from the first record on, as an attacker rewriting history would. */
function rechain(entries: Entry[]): Entry[] {
  let prevHash = GENESIS_HASH;
  return entries.map((entry, i) => {
    const record = { ...entry.record, seq: i + 1 };
    const hash = chainHash(prevHash, record);
    const rechained = { ...entry, record, prevHash, hash };
    prevHash = hash;
    return rechained;
  });
}

/**
 * The one home of the tampering tests, run on both stores (see vitest.config.ts): an attacker with
 * write access to the store edits, removes, moves, cuts or re-chains records and checkpoints, and
 * `GET /audit/verify` (or `keybrake audit verify-export`) names the first bad record. The pure
 * verifier's own table is verify-audit-chain.test.ts.
 */

/** A proxy with `count` records in its chain and a signed checkpoint at every `checkpointAt`. */
async function proxyWithRecords(count: number, checkpointAt: number[] = [count], env: Record<string, string> = {}) {
  const vendor = await startFakeVendor((_request, response) =>
    sendJson(response, 200, { id: `pi_${Math.random()}`, amount: 100, currency: 'usd' }),
  );
  const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, ...env } });
  const key = await proxy.issueKey({
    vendor: 'stripe',
    usd_cap: 1000,
    allowed_endpoints: ['POST /v1/payment_intents'],
  });
  for (let i = 1; i <= count; i += 1) {
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    if (checkpointAt.includes(i)) {
      const created = await proxy.admin('POST', '/audit/checkpoints');
      expect(created.status).toBe(201);
      expect(created.body.checkpoint).toMatchObject({ records: i });
    }
  }
  const access = TEST_STORE === 'redis' ? redisAccess(proxy) : sqliteAccess(proxy);
  return { proxy, key, access };
}

const verify = async (proxy: TestProxy) => (await proxy.admin('GET', '/audit/verify')).body;

describe(`audit tampering is detected (${TEST_STORE} store)`, () => {
  /** A chain of every outcome: forwarded, replayed (same Idempotency-Key), blocked (cap hit, unknown key). */
  async function proxyWithEveryOutcome() {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 2, allowed_endpoints: ['POST /v1/payment_intents'] });
    for (let i = 0; i < 4; i += 1) await stripeCharge(proxy, key.vault_key, 100, { 'idempotency-key': `k${i % 3}` });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(429);
    expect((await stripeCharge(proxy, 'kb_vk_nope', 100)).status).toBe(401);
    const access = TEST_STORE === 'redis' ? redisAccess(proxy) : sqliteAccess(proxy);
    return { proxy, key, access };
  }

  it('a chain of every outcome verifies, then an edited record in it is named by seq', async () => {
    const { proxy, access } = await proxyWithEveryOutcome();
    expect(await verify(proxy)).toMatchObject({ ok: true, records: 6 });
    const entries = await access.read();
    // $1 each under a $2 cap: k0 and k1 forwarded, k2 over the cap, k0 again replayed, then the cap
    // hit and the unknown key. Sorted: Redis seals records in the background, so a record without
    // a vault key (the unknown one) may take its seq before or after the others.
    expect(entries.map((entry) => entry.record.outcome).sort()).toEqual([
      'blocked',
      'blocked',
      'blocked',
      'forwarded',
      'forwarded',
      'replayed',
    ]);
    (entries[1] as Entry).record.path = '/v1/refunds';
    await access.write(entries);
    expect(await verify(proxy)).toEqual({ ok: false, records: 1, first_bad_seq: 2, reason: 'chain_broken' });
  });

  it('chains hash_n = sha256(hash_{n-1} || canonical_json(record_n)) from 64 zeros, checkable from outside', async () => {
    const { proxy, key, access } = await proxyWithEveryOutcome();
    // Verifying first also seals every record into the chain (Redis seals in the background).
    const verified = await verify(proxy);
    const entries = await access.read();
    let head = '0'.repeat(64);
    for (const entry of entries) {
      expect(entry.prevHash).toBe(head);
      head = createHash('sha256').update(head).update(canonicalJson(entry.record)).digest('hex');
      expect(entry.hash).toBe(head);
    }
    expect(verified).toMatchObject({ ok: true, records: 6, head });
    // What the API serves of a key's calls is exactly what was hashed.
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls).toEqual(entries.filter((entry) => entry.record.key_id === key.key_id).map((entry) => entry.record));
    expect(calls).toHaveLength(5);
  });

  it('an untouched chain verifies against its checkpoints', async () => {
    const { proxy } = await proxyWithRecords(8, [4, 8]);
    expect(await verify(proxy)).toMatchObject({ ok: true, records: 8, checkpoints: 2, last_checkpoint_records: 8 });
    // Nothing added since: no new checkpoint, the newest one back.
    const again = await proxy.admin('POST', '/audit/checkpoints');
    expect(again).toMatchObject({ status: 200, body: { checkpoint: { records: 8 } } });
    expect((await proxy.admin('GET', '/audit/checkpoints')).body.checkpoints).toHaveLength(2);
  });

  it('an edited record is named by seq', async () => {
    const { proxy, access } = await proxyWithRecords(6);
    const entries = await access.read();
    (entries[2] as Entry).record.cost_usd = 0.01;
    await access.write(entries);
    expect(await verify(proxy)).toEqual({ ok: false, records: 2, first_bad_seq: 3, reason: 'chain_broken' });
  });

  it('a deleted record and two swapped records are named by seq', async () => {
    const { proxy, access } = await proxyWithRecords(6);
    const entries = await access.read();
    await access.write(entries.filter((_, i) => i !== 3));
    expect(await verify(proxy)).toEqual({ ok: false, records: 3, first_bad_seq: 4, reason: 'chain_broken' });
    await access.write([entries[0], entries[2], entries[1], ...entries.slice(3)] as Entry[]);
    expect(await verify(proxy)).toEqual({ ok: false, records: 1, first_bad_seq: 2, reason: 'chain_broken' });
  });

  it('a record re-hashed without re-chaining the next one is named by seq', async () => {
    const { proxy, access } = await proxyWithRecords(4);
    const entries = await access.read();
    (entries[1] as Entry).hash = 'a'.repeat(64);
    await access.write(entries);
    expect(await verify(proxy)).toEqual({ ok: false, records: 1, first_bad_seq: 2, reason: 'chain_broken' });
  });

  it('a cut tail is caught against the last checkpoint, though what is left chains', async () => {
    const { proxy, access } = await proxyWithRecords(8, [4, 8]);
    await access.write((await access.read()).slice(0, 5));
    expect(await verify(proxy)).toEqual({ ok: false, records: 5, first_bad_seq: 6, reason: 'truncated' });
  });

  it('a history rewritten and re-hashed from record 6 on is caught by the checkpoint after it', async () => {
    const { proxy, access } = await proxyWithRecords(8, [4, 8]);
    const entries = await access.read();
    (entries[5] as Entry).record.cost_usd = 0.01;
    await access.write(rechain(entries));
    expect(await verify(proxy)).toEqual({ ok: false, records: 8, first_bad_seq: 5, reason: 'checkpoint_mismatch' });
  });

  it('a checkpoint edited to match a rewritten history fails its signature', async () => {
    const { proxy, access } = await proxyWithRecords(6);
    const entries = rechain(
      (await access.read()).map((entry) => ({ ...entry, record: { ...entry.record, cost_usd: 0 } })),
    );
    await access.write(entries);
    const [checkpoint] = await access.checkpoints();
    await access.writeCheckpoints([{ ...checkpoint, head: (entries.at(-1) as Entry).hash }]);
    expect(await verify(proxy)).toEqual({
      ok: false,
      records: 0,
      first_bad_seq: 6,
      reason: 'checkpoint_signature_invalid',
    });
  });

  it('signs checkpoints by itself every N records, or after the interval, and logs each one', async () => {
    const waitForCheckpoint = async (proxy: TestProxy, records: number) => {
      // The checkpointer looks at the head every second (or every interval, if shorter).
      for (let i = 0; i < 50; i += 1) {
        const { checkpoints } = (await proxy.admin('GET', '/audit/checkpoints')).body;
        if (checkpoints.at(-1)?.records === records) return checkpoints as { records: number }[];
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      throw new Error(`no checkpoint for ${records} records`);
    };
    const byCount = (await proxyWithRecords(7, [], { KEYBRAKE_AUDIT_CHECKPOINT_RECORDS: '3' })).proxy;
    const checkpoints = await waitForCheckpoint(byCount, 7);
    // Each one came at least 3 records after the one before (the interval is a minute).
    checkpoints.forEach((checkpoint, i) =>
      expect(checkpoint.records - (checkpoints[i - 1]?.records ?? 0)).toBeGreaterThanOrEqual(3),
    );
    const logged = byCount.logs().filter((line) => line.includes('"msg":"audit checkpoint"'));
    expect(logged.map((line) => JSON.parse(line).checkpoint)).toEqual(checkpoints);
    expect(byCount.logs().join('')).not.toContain('PRIVATE KEY');

    const byTime = (await proxyWithRecords(1, [], { KEYBRAKE_AUDIT_CHECKPOINT_INTERVAL_MS: '300' })).proxy;
    expect(await waitForCheckpoint(byTime, 1)).toHaveLength(1);
  });

  it('an export verifies offline against the pinned key; an edited, cut or re-signed export does not', async () => {
    const { proxy } = await proxyWithRecords(9, [5, 9]);
    const dir = mkdtempSync(join(tmpdir(), 'keybrake-export-'));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const keybrake = (...args: string[]) =>
      run(process.execPath, [CLI, ...args], {
        env: { PATH: process.env.PATH ?? '', KEYBRAKE_URL: proxy.url, KEYBRAKE_API_KEY: proxy.apiKey },
      }).then(
        (done) => ({ code: 0, out: JSON.parse(done.stdout) }),
        (failed: { code: number; stderr: string }) => ({ code: failed.code, out: JSON.parse(failed.stderr) }),
      );
    const exportFile = join(dir, 'audit.jsonl');
    await run(process.execPath, [CLI, 'audit', 'export', '--out', exportFile], {
      env: { PATH: process.env.PATH ?? '', KEYBRAKE_URL: proxy.url, KEYBRAKE_API_KEY: proxy.apiKey },
    });
    const publicKey = join(dir, 'proxy.pub.pem');
    writeFileSync(publicKey, (await proxy.admin('GET', '/audit/checkpoints')).body.public_key.pem);

    // The proxy is gone: the auditor has the file and the public key.
    await proxy.app.close();
    expect(await keybrake('audit', 'verify-export', exportFile, '--public-key', publicKey)).toEqual({
      code: 0,
      out: expect.objectContaining({ ok: true, records: 9, checkpoints: 2, keys_pinned: true }),
    });

    const lines = readFileSync(exportFile, 'utf8').trimEnd().split('\n');
    const variant = (name: string, edited: string[]) => {
      const file = join(dir, name);
      writeFileSync(file, `${edited.join('\n')}\n`);
      return keybrake('audit', 'verify-export', file, '--public-key', publicKey);
    };
    // Header, 2 checkpoints, then record 1 on line 4.
    const edited = [...lines];
    edited[6] = (edited[6] as string).replace('"cost_usd":1', '"cost_usd":0.5');
    expect(await variant('edited.jsonl', edited)).toMatchObject({
      code: 1,
      out: { ok: false, first_bad_seq: 4, reason: 'chain_broken' },
    });
    // Cut at record 7, header rewritten to claim 7: the checkpoint for 9 still says otherwise.
    const header = { ...JSON.parse(lines[0] as string), records: 7, head: JSON.parse(lines[9] as string).hash };
    expect(await variant('cut.jsonl', [JSON.stringify(header), ...lines.slice(1, 10)])).toMatchObject({
      code: 1,
      out: { ok: false, first_bad_seq: 8, reason: 'truncated' },
    });
    // Checkpoints dropped too: only the copy the auditor kept from the proxy's log catches it.
    const noCheckpoints = join(dir, 'cut-no-checkpoints.jsonl');
    writeFileSync(noCheckpoints, `${[JSON.stringify(header), ...lines.slice(3, 10)].join('\n')}\n`);
    expect(await keybrake('audit', 'verify-export', noCheckpoints, '--public-key', publicKey)).toMatchObject({
      code: 0,
      out: { ok: true, records: 7, checkpoints: 0 },
    });
    const log = join(dir, 'proxy.log');
    writeFileSync(log, proxy.logs().join(''));
    expect(
      await keybrake('audit', 'verify-export', noCheckpoints, '--public-key', publicKey, '--checkpoints', log),
    ).toMatchObject({ code: 1, out: { ok: false, first_bad_seq: 8, reason: 'truncated' } });
    // Re-signed by an attacker's own key: refused against the pinned one.
    const attacker = join(dir, 'attacker.pem');
    const { stdout } = await run(process.execPath, [CLI, 'audit', 'keygen', '--out', attacker]);
    expect(stdout).toContain('BEGIN PUBLIC KEY');
    expect(stdout).not.toContain('PRIVATE');
    const { CheckpointSigner } = await import('../src/audit/checkpoints.js');
    const forged = CheckpointSigner.fromPem(readFileSync(attacker, 'utf8')).sign(
      { records: 7, head: JSON.parse(lines[9] as string).hash },
      new Date().toISOString(),
    );
    expect(
      await variant('forged.jsonl', [
        JSON.stringify(header),
        JSON.stringify({ type: 'checkpoint', ...forged }),
        ...lines.slice(3, 10),
      ]),
    ).toMatchObject({ code: 1, out: { ok: false, reason: 'checkpoint_untrusted' } });
  });
});
