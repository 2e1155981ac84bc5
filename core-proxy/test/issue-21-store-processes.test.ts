import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyAuditChain, type AuditRecordJson } from '../src/index.js';
import type { ChainEntry } from '../src/audit/checkpoints.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import { testKeyRecord } from './store-fixtures.js';

/**
 * Issue 21: several processes on one embedded data directory (`keybrake serve --workers N`). Each
 * child below is its own `node` process opening the built store (`dist/`) on the same folder, as
 * the workers do; the HTTP side of `--workers` is tested with the CLI that starts them.
 */

const STORE_MODULE = new URL('../dist/store/sqlite-store.js', import.meta.url).href;
const COST = 7;

/**
 * A child process's script: opens the store and answers commands, one JSON line each way.
 * `race n`: n concurrent reserve + settle calls at COST each; `hold n`: n reservations left open;
 * `settle`: settles the held ones; `find`: looks the key up by hash (as every call does), then reserves.
 */
const CHILD = `
import { createInterface } from 'node:readline';
const { SqliteStore } = await import(process.env.STORE_MODULE);
const store = new SqliteStore({ dataDir: process.env.DATA_DIR });
const keyId = process.env.KEY_ID;
const cost = Number(process.env.COST);
const pending = { keyId, vendor: 'stripe', method: 'POST', path: '/v1/payment_intents', idempotencyKey: null, agentRunLabel: null, tainted: false };
const held = [];
let next = 0;
const reserve = () => {
  const reservationId = process.pid + '-' + next++;
  return store.reserve({ keyId, reservationId, costMicros: cost, now: Date.now(), idempotency: null, sensitive: true, pending })
    .then((out) => ({ out, reservationId }));
};
const settle = (reservationId) => store.settle({ keyId, reservationId, actualMicros: cost, idempotentResponse: null,
  audit: { ...pending, at: new Date().toISOString(), outcome: 'forwarded', reason: null, status: 200, costMicros: cost, vendorRequestId: reservationId } });
const answer = (value) => process.stdout.write(JSON.stringify(value) + '\\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [command, count] = line.split(' ');
  try {
    if (command === 'race') {
      const results = await Promise.all(Array.from({ length: Number(count) }, async () => {
        const { out, reservationId } = await reserve();
        if (out.kind !== 'reserved') return out.code;
        return (await settle(reservationId)) ? 'settled' : 'lost';
      }));
      answer({ settled: results.filter((r) => r === 'settled').length, refused: results.filter((r) => r === 'cap_exhausted').length, other: results.filter((r) => r !== 'settled' && r !== 'cap_exhausted') });
    } else if (command === 'hold') {
      for (let i = 0; i < Number(count); i++) {
        const { out, reservationId } = await reserve();
        if (out.kind === 'reserved') held.push(reservationId);
      }
      answer({ held: held.length });
    } else if (command === 'settle') {
      const settled = await Promise.all(held.map((id) => settle(id)));
      answer({ settled: settled.filter(Boolean).length });
    } else if (command === 'find') {
      const record = await store.findKeyByHash(process.env.KEY_ID + '-hash');
      const { out } = await reserve();
      answer({ revoked: record.revokedAt !== null, tainted: record.tainted, reserve: out.kind === 'reserved' ? 'reserved' : out.code });
    } else if (command === 'close') {
      await store.close();
      answer({ closed: true });
      process.exit(0);
    }
  } catch (error) {
    answer({ error: String(error) });
  }
}
`;

interface StoreProcess {
  readonly child: ChildProcess;
  send(command: string): Promise<Record<string, unknown>>;
}

const children: ChildProcess[] = [];
const dirs: string[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function startStoreProcess(dataDir: string, keyId: string): StoreProcess {
  const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], {
    env: { ...process.env, STORE_MODULE, DATA_DIR: dataDir, KEY_ID: keyId, COST: String(COST) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    async send(command) {
      child.stdin!.write(`${command}\n`);
      const line = await lines.next();
      if (line.done) throw new Error(`store process exited before answering ${command}`);
      const answer = JSON.parse(line.value) as Record<string, unknown>;
      if ('error' in answer) throw new Error(String(answer.error));
      return answer;
    },
  };
}

async function keyWithCap(dataDir: string, capMicros: number): Promise<string> {
  const store = new SqliteStore({ dataDir });
  const keyId = `vk_${Math.random().toString(36).slice(2)}`;
  await store.createKey(
    testKeyRecord(keyId, Date.now(), {
      keyHash: `${keyId}-hash`,
      dailyCapMicros: capMicros,
      capMicros,
    }),
  );
  await store.close();
  return keyId;
}

async function chainOf(store: SqliteStore): Promise<{ ok: boolean; records: AuditRecordJson[] }> {
  const head = await store.auditHead();
  const rows = await store.readAudit(0, 100_000);
  const entries: ChainEntry[] = rows.map((row) => ({
    seq: row.seq,
    record: JSON.parse(row.record) as AuditRecordJson,
    prevHash: row.prevHash,
    hash: row.hash,
  }));
  const verification = await verifyAuditChain({
    head,
    entries: (async function* () {
      yield* entries;
    })(),
    checkpoints: [],
    trusted: new Map(),
  });
  return { ok: verification.ok && head.records === rows.length, records: entries.map((entry) => entry.record!) };
}

describe('issue 21: two processes on one embedded data directory', () => {
  it('race reservations at one key: $0 overshoot, the cap filled exactly, one unbroken audit chain', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i21-procs-'));
    dirs.push(dataDir);
    const calls = 60;
    const capMicros = calls * COST; // room for exactly `calls` of the 2 x 3 x `calls` attempts
    const keyId = await keyWithCap(dataDir, capMicros);
    const first = startStoreProcess(dataDir, keyId);
    const second = startStoreProcess(dataDir, keyId);
    const totals = { settled: 0, refused: 0 };
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all([first.send(`race ${calls}`), second.send(`race ${calls}`)]);
      for (const answer of answers) {
        expect(answer.other).toEqual([]);
        totals.settled += answer.settled as number;
        totals.refused += answer.refused as number;
      }
    }
    await Promise.all([first.send('close'), second.send('close')]);

    const store = new SqliteStore({ dataDir });
    try {
      const key = await store.getKey(keyId, Date.now());
      console.log(
        `[figures] two processes, ${6 * calls} attempts at a cap of ${calls} calls: ${totals.settled} settled, ${totals.refused} refused`,
      );
      expect(totals.settled).toBe(calls);
      expect(totals.refused).toBe(6 * calls - calls);
      expect(key?.spentMicros).toBe(capMicros);
      expect(key?.spentTodayMicros).toBe(capMicros);
      expect(key?.reservedMicros).toBe(0);
      const chain = await chainOf(store);
      expect(chain.ok).toBe(true);
      expect(chain.records).toHaveLength(calls);
      expect(new Set(chain.records.map((record) => record.vendor_request_id)).size).toBe(calls);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('a revocation or taint by one process reaches the key record another process has cached', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i21-procs-'));
    dirs.push(dataDir);
    const keyId = await keyWithCap(dataDir, 1000 * COST);
    const worker = startStoreProcess(dataDir, keyId);
    expect(await worker.send('find')).toEqual({ revoked: false, tainted: false, reserve: 'reserved' });
    expect(await worker.send('find')).toEqual({ revoked: false, tainted: false, reserve: 'reserved' });
    const admin = new SqliteStore({ dataDir });
    try {
      expect(await admin.taintKey(keyId)).toBe(true);
      // The child's calls are sensitive: a tainted key is refused inside the reservation.
      expect(await worker.send('find')).toEqual({ revoked: false, tainted: true, reserve: 'tainted_request_refused' });
      expect(await admin.revokeKey(keyId, Date.now())).toBe(true);
      expect(await worker.send('find')).toEqual({ revoked: true, tainted: true, reserve: 'vault_key_revoked' });
    } finally {
      await admin.close();
    }
    await worker.send('close');
  }, 120_000);

  it("recovers only a dead process's reservations: a live sibling's in-flight calls stay its own to settle", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i21-procs-'));
    dirs.push(dataDir);
    const keyId = await keyWithCap(dataDir, 1000 * COST);
    const live = startStoreProcess(dataDir, keyId);
    const doomed = startStoreProcess(dataDir, keyId);
    expect(await live.send('hold 5')).toEqual({ held: 5 });
    expect(await doomed.send('hold 3')).toEqual({ held: 3 });
    doomed.child.kill('SIGKILL');
    await new Promise((resolve) => doomed.child.once('exit', resolve));

    // A process starting now (a restarted worker) recovers what the dead one left, and only that.
    const restarted = new SqliteStore({ dataDir });
    try {
      const key = await restarted.getKey(keyId, Date.now());
      expect(key?.unknownMicros).toBe(3 * COST);
      expect(key?.reservedMicros).toBe(5 * COST);
      expect(await live.send('settle')).toEqual({ settled: 5 });
      const after = await restarted.getKey(keyId, Date.now());
      expect(after?.reservedMicros).toBe(0);
      expect(after?.spentMicros).toBe(8 * COST);
      const chain = await chainOf(restarted);
      expect(chain.ok).toBe(true);
      expect(chain.records.map((record) => record.outcome).sort()).toEqual([
        ...Array<string>(5).fill('forwarded'),
        ...Array<string>(3).fill('unknown'),
      ]);
    } finally {
      await restarted.close();
    }
    await live.send('close');
  }, 120_000);
});
