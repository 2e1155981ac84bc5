import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { closeOpenedAfterEach, opened, reachable, storeBackends } from './store-backends.js';
import {
  type AuditInput,
  type ReserveInput,
  type ReserveOutput,
  type ReserveRoom,
  type Store,
  type VaultKeyRecord,
  KeybrakeError,
  RedisStore,
  SqliteStore,
  StoreUnavailableError,
} from '../src/index.js';
import { KeyDepthExceededError } from '../src/errors.js';
import type { KeyLimits } from '../src/store/key-limits.js';
import { MAX_KEY_DEPTH } from '../src/keys/key-depth.js';
import { freePort } from './ports.js';
import { testAuditInput, testKeyRecord, testReserveInput } from './store-fixtures.js';

/**
 * Issue 20: both stores keep one contract. Every scenario below runs, through the `Store`
 * interface the package exports, against the embedded store, one Redis and a Redis Cluster, and
 * the answers must be the same on all three, and the one the contract's order gives
 * (`Store.reserve`, `Store.createKey`). The embedded store checks in TypeScript, the Redis store
 * in Lua: this is what keeps the two in step.
 */

const HOUR = 3_600_000;
const T0 = Date.parse('2026-06-01T12:00:00.000Z');

closeOpenedAfterEach();

const BACKENDS = storeBackends('keybrake-i20-');

const keyRecord = (keyId: string, overrides: Partial<VaultKeyRecord> = {}): VaultKeyRecord =>
  testKeyRecord(keyId, T0, { expiresAt: T0 + 24 * HOUR, ...overrides });

const reserveInput = (keyId: string, overrides: Partial<ReserveInput> = {}): ReserveInput =>
  testReserveInput(keyId, T0 + HOUR, overrides);

const auditInput = (keyId: string | null, overrides: Partial<AuditInput> = {}): AuditInput =>
  testAuditInput(keyId, T0 + HOUR, { vendorRequestId: 'req_1', ...overrides });

/** Reserves and settles `micros` of spend on a key. */
async function spend(store: Store, keyId: string, micros: number, now = T0 + HOUR): Promise<void> {
  const input = reserveInput(keyId, { costMicros: micros, now });
  expect((await store.reserve(input)).kind).toBe('reserved');
  expect(
    await store.settle({
      keyId,
      reservationId: input.reservationId,
      actualMicros: micros,
      idempotentResponse: null,
      audit: auditInput(keyId, { costMicros: micros }),
    }),
  ).toBe(true);
}

/** A parent P ($10 cap) and its child C ($5 cap, $3 a day): the call is made with C. */
interface Family {
  readonly parent: string;
  readonly child: string;
}

async function family(store: Store, ids: Family, child: Partial<VaultKeyRecord> = {}): Promise<void> {
  await store.createKey(keyRecord(ids.parent, { capMicros: 10_000_000 }));
  await store.createKey(
    keyRecord(ids.child, { parentKeyId: ids.parent, capMicros: 5_000_000, dailyCapMicros: 3_000_000, ...child }),
  );
}

const idem = (key: string, fingerprint: string) => ({ key, fingerprint });

interface ReserveScenario {
  readonly name: string;
  /** Brings the store into the scenario's state; returns the call to reserve. */
  readonly arrange: (store: Store, ids: Family) => Promise<ReserveInput>;
  /** The answer the order of `Store.reserve` gives; `capKeyId` as 'parent' or 'child'. */
  readonly expected:
    | { readonly kind: 'reserved'; readonly tainted: boolean; readonly room: ReserveRoom }
    | { readonly kind: 'replay' }
    | {
        readonly kind: 'refused';
        readonly code: string;
        readonly capKey?: 'parent' | 'child';
        readonly retryAfterS?: number;
      };
}

/** What a $1 call leaves in the family: the child's $3 a day is the tightest cap. */
const ROOM = { remainingMicros: 2_000_000, requests: null, concurrent: null };

/** Issue 26: the family with limits on the parent (`parent`) and on the child (`child`). */
async function limitedFamily(
  store: Store,
  ids: Family,
  parent: Partial<KeyLimits>,
  child: Partial<KeyLimits> = {},
): Promise<void> {
  const limits = (given: Partial<KeyLimits>): KeyLimits => ({
    maxRequestsPerSecond: null,
    maxRequestsPerMinute: null,
    maxConcurrent: null,
    ...given,
  });
  await store.createKey(keyRecord(ids.parent, { capMicros: 10_000_000, limits: limits(parent) }));
  await store.createKey(
    keyRecord(ids.child, {
      parentKeyId: ids.parent,
      capMicros: 5_000_000,
      dailyCapMicros: 3_000_000,
      ...(Object.keys(child).length > 0 ? { limits: limits(child) } : {}),
    }),
  );
}

/** Every condition the scenario adds is one a later step would also refuse: the earliest must win. */
const RESERVE_SCENARIOS: readonly ReserveScenario[] = [
  {
    name: 'nothing in the way',
    arrange: async (store, ids) => (await family(store, ids), reserveInput(ids.child)),
    expected: { kind: 'reserved', tainted: false, room: ROOM },
  },
  {
    name: 'an unknown key',
    arrange: async (store, ids) => (await family(store, ids), reserveInput(randomUUID(), { sensitive: true })),
    expected: { kind: 'refused', code: 'invalid_vault_key' },
  },
  {
    name: 'revoked + expired + tainted + idempotency key reused + over every cap: revoked',
    arrange: async (store, ids) => {
      await family(store, ids, { expiresAt: T0 + 2 * HOUR });
      await spend(store, ids.child, 2_000_000);
      await store.reserve(reserveInput(ids.child, { costMicros: 500_000, idempotency: idem('k1', 'f1') }));
      await store.taintKey(ids.child);
      await store.revokeKey(ids.parent, T0 + HOUR);
      return reserveInput(ids.child, {
        now: T0 + 3 * HOUR,
        sensitive: true,
        costMicros: 9_000_000,
        idempotency: idem('k1', 'f2'),
      });
    },
    expected: { kind: 'refused', code: 'vault_key_revoked' },
  },
  {
    name: 'expired + tainted + idempotency key in use + over every cap: expired',
    arrange: async (store, ids) => {
      await family(store, ids, { expiresAt: T0 + 2 * HOUR });
      await store.reserve(reserveInput(ids.child, { costMicros: 500_000, idempotency: idem('k1', 'f1') }));
      await store.taintKey(ids.parent);
      return reserveInput(ids.child, {
        now: T0 + 3 * HOUR,
        sensitive: true,
        costMicros: 9_000_000,
        idempotency: idem('k1', 'f1'),
      });
    },
    expected: { kind: 'refused', code: 'vault_key_expired' },
  },
  {
    name: 'tainted (through the parent) + idempotency key reused + over every cap: tainted',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.reserve(reserveInput(ids.child, { costMicros: 500_000, idempotency: idem('k1', 'f1') }));
      await store.taintKey(ids.parent);
      return reserveInput(ids.child, { sensitive: true, costMicros: 9_000_000, idempotency: idem('k1', 'f2') });
    },
    expected: { kind: 'refused', code: 'tainted_request_refused' },
  },
  {
    name: 'tainted on an endpoint that moves no money + over the daily cap: the cap',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.taintKey(ids.child);
      return reserveInput(ids.child, { sensitive: false, costMicros: 4_000_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'child' },
  },
  {
    name: 'tainted on an endpoint that moves no money, within the caps: reserved, and says tainted',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.taintKey(ids.parent);
      return reserveInput(ids.child, { sensitive: false });
    },
    expected: { kind: 'reserved', tainted: true, room: ROOM },
  },
  {
    name: 'idempotency key reused + in use + over every cap: reused',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.reserve(reserveInput(ids.child, { costMicros: 2_500_000, idempotency: idem('k1', 'f1') }));
      return reserveInput(ids.child, { costMicros: 9_000_000, idempotency: idem('k1', 'f2') });
    },
    expected: { kind: 'refused', code: 'idempotency_key_reused' },
  },
  {
    name: 'idempotency key in use + over every cap: in use',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.reserve(reserveInput(ids.child, { costMicros: 2_500_000, idempotency: idem('k1', 'f1') }));
      return reserveInput(ids.child, { costMicros: 9_000_000, idempotency: idem('k1', 'f1') });
    },
    expected: { kind: 'refused', code: 'idempotency_key_in_use' },
  },
  {
    name: 'a kept response + over every cap: the replay',
    arrange: async (store, ids) => {
      await family(store, ids);
      const first = reserveInput(ids.child, { costMicros: 2_500_000, idempotency: idem('k1', 'f1') });
      await store.reserve(first);
      await store.settle({
        keyId: ids.child,
        reservationId: first.reservationId,
        actualMicros: 2_500_000,
        idempotentResponse: { status: 200, headers: {}, body: '', vendorRequestId: null },
        audit: auditInput(ids.child, { costMicros: 2_500_000, idempotencyKey: 'k1' }),
      });
      return reserveInput(ids.child, { costMicros: 9_000_000, idempotency: idem('k1', 'f1') });
    },
    expected: { kind: 'replay' },
  },
  {
    name: "the child's daily cap before the parent's lifetime cap (nearest key first)",
    arrange: async (store, ids) => {
      await family(store, ids);
      await spend(store, ids.parent, 8_000_000);
      return reserveInput(ids.child, { costMicros: 3_500_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'child' },
  },
  {
    name: "the child's lifetime cap counts every day's spend",
    arrange: async (store, ids) => {
      await family(store, ids);
      await spend(store, ids.child, 2_500_000, T0 - 44 * HOUR);
      await spend(store, ids.child, 2_000_000, T0 - 20 * HOUR);
      // Within today's $3, over the lifetime $5.
      return reserveInput(ids.child, { costMicros: 1_000_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'child' },
  },
  {
    name: "only the parent's lifetime cap",
    arrange: async (store, ids) => {
      await family(store, ids);
      await spend(store, ids.parent, 8_000_000);
      return reserveInput(ids.child, { costMicros: 2_500_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'parent' },
  },
  {
    name: 'a reservation in flight counts against the cap',
    arrange: async (store, ids) => {
      await family(store, ids);
      await store.reserve(reserveInput(ids.child, { costMicros: 2_000_000 }));
      return reserveInput(ids.child, { costMicros: 1_500_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'child' },
  },
  // Issue 26: step 7, the limits, nearest key first, after every cap.
  {
    name: "issue 26: within the family's limits: reserved, with the tightest room",
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxConcurrent: 3, maxRequestsPerSecond: 10 }, { maxRequestsPerMinute: 5 });
      await store.reserve(reserveInput(ids.child, { costMicros: 0 }));
      return reserveInput(ids.child);
    },
    expected: { kind: 'reserved', tainted: false, room: { remainingMicros: 2_000_000, requests: 3, concurrent: 1 } },
  },
  {
    name: "issue 26: the parent's max_concurrent reached by a call in flight: concurrency_limited",
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxConcurrent: 1 });
      await store.reserve(reserveInput(ids.child, { costMicros: 0 }));
      return reserveInput(ids.child);
    },
    expected: { kind: 'refused', code: 'concurrency_limited', retryAfterS: 1 },
  },
  {
    name: 'issue 26: a settled call no longer counts in flight',
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxConcurrent: 1 });
      await spend(store, ids.child, 0);
      return reserveInput(ids.child);
    },
    expected: { kind: 'reserved', tainted: false, room: { remainingMicros: 2_000_000, requests: null, concurrent: 0 } },
  },
  {
    name: "issue 26: the child's own per-minute window full: rate_limited to the minute's end",
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxRequestsPerSecond: 10 }, { maxRequestsPerMinute: 1 });
      await spend(store, ids.child, 0);
      // 39.75 s before the minute ends: 40 whole seconds.
      return reserveInput(ids.child, { now: T0 + HOUR + 20_250 });
    },
    expected: { kind: 'refused', code: 'rate_limited', retryAfterS: 40 },
  },
  {
    name: "issue 26: the parent's per-second window full at its 999th ms: rate_limited for 1 s",
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxRequestsPerSecond: 1 });
      await spend(store, ids.child, 0, T0 + HOUR - 2000);
      await spend(store, ids.child, 0, T0 + HOUR - 1000);
      return reserveInput(ids.child, { now: T0 + HOUR - 1 });
    },
    expected: { kind: 'refused', code: 'rate_limited', retryAfterS: 1 },
  },
  {
    name: 'issue 26: over a cap and over a limit: the cap hit',
    arrange: async (store, ids) => {
      await limitedFamily(store, ids, { maxConcurrent: 1, maxRequestsPerSecond: 1 });
      await store.reserve(reserveInput(ids.child, { costMicros: 0 }));
      return reserveInput(ids.child, { costMicros: 3_500_000 });
    },
    expected: { kind: 'refused', code: 'cap_exhausted', capKey: 'child' },
  },
];

function comparable(output: ReserveOutput, ids: Family): unknown {
  if (output.kind === 'replay') return { kind: 'replay' };
  if (output.kind === 'reserved') return output;
  const capKey = output.capKeyId === ids.parent ? 'parent' : output.capKeyId === ids.child ? 'child' : output.capKeyId;
  return {
    kind: 'refused',
    code: output.code,
    ...(capKey === undefined ? {} : { capKey }),
    ...(output.retryAfterS === undefined ? {} : { retryAfterS: output.retryAfterS }),
  };
}

describe('issue 20: reserve answers the same on every store, in the order of Store.reserve', () => {
  it.each(RESERVE_SCENARIOS.map((scenario) => [scenario.name, scenario] as const))('%s', async (_name, scenario) => {
    const answers: Record<string, unknown> = {};
    for (const backend of BACKENDS) {
      const store = await backend.open();
      const ids = { parent: randomUUID(), child: randomUUID() };
      answers[backend.name] = comparable(await store.reserve(await scenario.arrange(store, ids)), ids);
    }
    expect(answers).toEqual(Object.fromEntries(BACKENDS.map((backend) => [backend.name, scenario.expected])));
  });
});

/** The error as a caller sees it: its class, contract code, HTTP status and message. */
async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof KeybrakeError)) return { untyped: String(error) };
    return { type: error.constructor.name, code: error.code, status: error.statusCode, message: error.message };
  }
  return 'no error';
}

/** A chain of `length` keys, root first; returns the ids. */
async function chain(store: Store, length: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < length; i += 1) {
    const keyId = randomUUID();
    await store.createKey(keyRecord(keyId, { parentKeyId: ids.at(-1) ?? null }));
    ids.push(keyId);
  }
  return ids;
}

const INACTIVE = {
  type: 'InvalidRequestError',
  code: 'invalid_request',
  status: 400,
  message: 'The parent key is not active.',
};
const TOO_DEEP = {
  type: 'KeyDepthExceededError',
  code: 'key_depth_exceeded',
  status: 400,
  message: new KeyDepthExceededError(MAX_KEY_DEPTH).message,
};

const CREATE_SCENARIOS: readonly {
  readonly name: string;
  readonly attempt: (store: Store) => Promise<unknown>;
  readonly expected: unknown;
}[] = [
  {
    name: 'a parent that does not exist',
    attempt: (store) => failure(store.createKey(keyRecord(randomUUID(), { parentKeyId: randomUUID() }))),
    expected: { ...INACTIVE, message: 'parent_key_id names no vault key.' },
  },
  {
    name: 'a revoked parent',
    attempt: async (store) => {
      const [parent] = await chain(store, 1);
      await store.revokeKey(parent!, T0);
      return failure(store.createKey(keyRecord(randomUUID(), { parentKeyId: parent! })));
    },
    expected: INACTIVE,
  },
  {
    name: 'a parent expired when the child is created',
    attempt: async (store) => {
      const [parent] = await chain(store, 1);
      return failure(store.createKey(keyRecord(randomUUID(), { parentKeyId: parent!, createdAt: T0 + 25 * HOUR })));
    },
    expected: INACTIVE,
  },
  {
    name: 'a parent with no room left',
    attempt: async (store) => {
      const ids = await chain(store, MAX_KEY_DEPTH + 1);
      return failure(store.createKey(keyRecord(randomUUID(), { parentKeyId: ids.at(-1)! })));
    },
    expected: TOO_DEEP,
  },
  {
    // Regression: issue 20. The Redis store refused this as too deep before it looked at the
    // parent's state; the embedded store (and the admin route) said the parent is not active.
    name: 'a revoked parent with no room left: inactive comes first',
    attempt: async (store) => {
      const ids = await chain(store, MAX_KEY_DEPTH + 1);
      await store.revokeKey(ids.at(-1)!, T0);
      return failure(store.createKey(keyRecord(randomUUID(), { parentKeyId: ids.at(-1)! })));
    },
    expected: INACTIVE,
  },
  {
    name: 'a tainted parent expiring before the child asks: the child as stored',
    attempt: async (store) => {
      const parent = randomUUID();
      await store.createKey(keyRecord(parent, { expiresAt: T0 + 2 * HOUR }));
      await store.taintKey(parent);
      const child = randomUUID();
      const stored = await store.createKey(keyRecord(child, { parentKeyId: parent }));
      const read = await store.getKey(child, T0);
      return {
        stored: { tainted: stored.tainted, expiresAt: stored.expiresAt },
        read: { tainted: read?.tainted, expiresAt: read?.expiresAt },
      };
    },
    expected: {
      stored: { tainted: true, expiresAt: T0 + 2 * HOUR },
      read: { tainted: true, expiresAt: T0 + 2 * HOUR },
    },
  },
];

describe('issue 20: createKey refuses with the same typed error on every store, in the order of Store.createKey', () => {
  it.each(CREATE_SCENARIOS.map((scenario) => [scenario.name, scenario] as const))('%s', async (_name, scenario) => {
    const answers: Record<string, unknown> = {};
    for (const backend of BACKENDS) answers[backend.name] = await scenario.attempt(await backend.open());
    expect(answers).toEqual(Object.fromEntries(BACKENDS.map((backend) => [backend.name, scenario.expected])));
  });
});

describe('issue 20: a store that cannot be reached fails every operation closed, typed the same way', () => {
  it('is store_unavailable (503) on a closed embedded store and on a Redis nobody listens on', async () => {
    const closed = new SqliteStore({ dataDir: mkdtempSync(join(tmpdir(), 'keybrake-i20-')) });
    await closed.close();
    const unreachable = new RedisStore({ url: `redis://127.0.0.1:${await freePort()}`, commandTimeoutMs: 500 });
    opened.push(unreachable);
    const unavailable = {
      type: 'StoreUnavailableError',
      code: 'store_unavailable',
      status: 503,
      message: new StoreUnavailableError().message,
    };
    for (const store of [closed, unreachable]) {
      const keyId = randomUUID();
      expect(await failure(store.createKey(keyRecord(keyId)))).toEqual(unavailable);
      expect(await failure(store.reserve(reserveInput(keyId)))).toEqual(unavailable);
      expect(await failure(store.appendAudit(auditInput(keyId)))).toEqual(unavailable);
      expect(await failure(store.getKey(keyId, T0))).toEqual(unavailable);
      expect(await failure(store.completeAuditHead())).toEqual(unavailable);
    }
  });
});

describe('issue 20: one audit record shape and one chain, whichever store writes it', () => {
  it('chains the same records to the same head on every store, and counts every record written', async () => {
    const heads: Record<string, unknown> = {};
    // One key id in every store (each store is its own deployment): the records are then equal.
    const keyId = randomUUID();
    for (const backend of BACKENDS) {
      const store = await backend.open();
      await store.createKey(keyRecord(keyId));
      // Written one after another, so every store gives them the same order.
      await store.appendAudit(auditInput(keyId, { outcome: 'blocked', reason: 'cap_exhausted', status: 402 }));
      await store.appendAudit(auditInput(keyId, { outcome: 'replayed', idempotencyKey: 'k1', tainted: true }));
      await store.appendAudit(auditInput(keyId, { costMicros: 1_234_567, vendorRequestId: 'req_2' }));
      const head = await store.completeAuditHead();
      expect(await store.auditMissing()).toBe(0);
      const chain = (await store.readAudit(0, 10)).map((entry) => ({ ...entry, record: JSON.parse(entry.record) }));
      heads[backend.name] = { head, chain, calls: await store.listCalls(keyId) };
    }
    const embedded = heads.embedded as { head: { records: number }; chain: { record: unknown }[]; calls: unknown[] };
    expect(embedded.head.records).toBe(3);
    expect(embedded.calls).toEqual(embedded.chain.map((entry) => entry.record));
    expect(embedded.calls).toMatchObject([
      { seq: 1, key_id: keyId, outcome: 'blocked', reason: 'cap_exhausted', status: 402, cost_usd: 1 },
      { seq: 2, outcome: 'replayed', idempotency_key: 'k1', tainted: true },
      { seq: 3, outcome: 'forwarded', cost_usd: 1.234567, vendor_request_id: 'req_2' },
    ]);
    for (const backend of BACKENDS) expect(heads[backend.name]).toEqual(heads.embedded);
  });

  it('records an interrupted call (its process died mid-call) the same way on every store', async () => {
    const recoveredAt = T0 + 2 * HOUR;
    const records: Record<string, unknown> = {};
    for (const backend of BACKENDS) {
      const keyId = randomUUID();
      const input = reserveInput(keyId, { costMicros: 1_500_000, idempotency: idem('k1', 'f1') });
      if (backend.name === 'embedded') {
        const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i20-'));
        const before = new SqliteStore({ dataDir });
        await before.createKey(keyRecord(keyId, { capMicros: 2_000_000 }));
        expect((await before.reserve(input)).kind).toBe('reserved');
        await before.close();
        // The next start finds the reservation of a call that never settled.
        const after = await reachable(new SqliteStore({ dataDir, now: () => recoveredAt }));
        records[backend.name] = await interrupted(after, keyId, input);
      } else {
        const store = (await backend.open()) as RedisStore;
        await store.createKey(keyRecord(keyId, { capMicros: 2_000_000 }));
        expect((await store.reserve(input)).kind).toBe('reserved');
        // Another replica's sweeper, once the reservation's deadline has passed.
        expect(await store.sweepExpiredReservations(recoveredAt)).toBe(1);
        records[backend.name] = await interrupted(store, keyId, input);
      }
    }
    expect(records.embedded).toEqual({
      calls: [
        {
          seq: 1,
          at: new Date(recoveredAt).toISOString(),
          vendor: 'stripe',
          method: 'POST',
          path: '/v1/payment_intents',
          outcome: 'unknown',
          reason: 'interrupted',
          status: null,
          cost_usd: 1.5,
          vendor_request_id: null,
          idempotency_key: 'k1',
          agent_run_label: null,
          tainted: false,
        },
      ],
      spent: 1_500_000,
      unknown: 1_500_000,
      reserved: 0,
      // The claim is released: a retry with the same key reaches the cap check, not `in use`.
      retry: { kind: 'refused', code: 'cap_exhausted', capKeyId: 'the key' },
    });
    for (const backend of BACKENDS) expect(records[backend.name]).toEqual(records.embedded);
  });
});

async function interrupted(store: Store, keyId: string, input: ReserveInput): Promise<unknown> {
  const calls = (await store.listCalls(keyId)).map(({ key_id: _keyId, ...rest }) => rest);
  const state = await store.getKey(keyId, input.now);
  const retry = await store.reserve({ ...input, reservationId: randomUUID() });
  return {
    calls,
    spent: state?.spentMicros,
    unknown: state?.unknownMicros,
    reserved: state?.reservedMicros,
    retry: retry.kind === 'refused' && retry.capKeyId === keyId ? { ...retry, capKeyId: 'the key' } : retry,
  };
}

describe('issue 20: tracked vendor objects and kept responses, the same on every store', () => {
  // Regression: issue 20. The embedded store made an unknown key a family of its own (the claim
  // succeeded, the object was recorded for a key that does not exist); Redis failed the same
  // calls as a 503, as if the store were down. Both refuse them as the reserve step does.
  it('refuses object calls for a key the store does not know as invalid_vault_key, and claims for a known one', async () => {
    const answers: Record<string, unknown> = {};
    for (const backend of BACKENDS) {
      const store = await backend.open();
      const known = randomUUID();
      await store.createKey(keyRecord(known));
      const unknown = randomUUID();
      const objectId = `pi_${randomUUID()}`;
      const claim = (keyId: string) => ({
        keyId,
        objectId,
        claimId: randomUUID(),
        now: T0 + HOUR,
        until: T0 + 2 * HOUR,
      });
      const state = { amount: 100, currency: 'usd', bookedMicros: 1_000_000 };
      answers[backend.name] = {
        claim: await failure(store.claimObject(claim(unknown))),
        record: await failure(store.recordObject({ keyId: unknown, objectId, state })),
        release: await failure(store.releaseObject({ keyId: unknown, objectId, claimId: randomUUID(), state })),
        known: await store.claimObject(claim(known)),
      };
    }
    const refused = {
      type: 'InvalidVaultKeyError',
      code: 'invalid_vault_key',
      status: 401,
      message: 'The vault key is not known.',
    };
    const expected = { claim: refused, record: refused, release: refused, known: { kind: 'claimed', state: null } };
    expect(answers).toEqual(Object.fromEntries(BACKENDS.map((backend) => [backend.name, expected])));
  });

  // Regression: issue 20. The contract keeps a stored response at least 24 hours. Redis counted
  // them from the settle (when the response is stored); the embedded store from the claim, so a
  // response was purged the length of its call early. A claim made 25 hours ago (a long call,
  // as the logical clock of `reserve` says) and settled now must still replay.
  it('keeps a response for idempotent replay its retention from the settle, not from the claim', async () => {
    const settledAt = Date.now();
    const claimedAt = settledAt - 25 * HOUR;
    const response = {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: 'e30=',
      vendorRequestId: 'req_1',
    };
    const answers: Record<string, unknown> = {};
    for (const backend of BACKENDS) {
      const keyId = randomUUID();
      const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-i20-'));
      const prefix = `t:${randomUUID()}:`;
      // The embedded store purges kept responses when it starts (and every 10 minutes): reopened.
      const open = (): Promise<Store> =>
        backend.name === 'embedded'
          ? reachable(new SqliteStore({ dataDir, now: () => settledAt }))
          : reachable(
              new RedisStore({ url: inject(backend.name === 'redis' ? 'redisUrl' : 'redisClusterUrl'), prefix }),
            );
      const before = await open();
      await before.createKey(keyRecord(keyId, { createdAt: claimedAt - HOUR, expiresAt: settledAt + HOUR }));
      const input = reserveInput(keyId, { now: claimedAt, idempotency: idem('k1', 'f1') });
      expect((await before.reserve(input)).kind).toBe('reserved');
      expect(
        await before.settle({
          keyId,
          reservationId: input.reservationId,
          actualMicros: input.costMicros,
          idempotentResponse: response,
          audit: auditInput(keyId, { idempotencyKey: 'k1' }),
        }),
      ).toBe(true);
      await before.close();
      const after = await open();
      answers[backend.name] = await after.reserve({ ...input, reservationId: randomUUID(), now: settledAt });
    }
    expect(answers).toEqual(
      Object.fromEntries(BACKENDS.map((backend) => [backend.name, { kind: 'replay', response }])),
    );
  });
});
