import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { closeOpenedAfterEach, storeBackends, testArchiver } from './store-backends.js';
import type { Archiver, ArchiverOptions } from '../src/archive/archiver.js';
import { DirectorySink } from '../src/archive/directory-sink.js';
import { decodeSegment, encodeSegment, segmentName } from '../src/archive/segment.js';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { GENESIS_HASH } from '../src/audit/chain.js';
import type { AuditEntry, AuditInput, Store, VaultKeyRecord } from '../src/store/store.js';
import { testAuditInput, testKeyRecord } from './store-fixtures.js';

/**
 * Issue 23: the archiver on the embedded store, one Redis and a Redis Cluster: segments cut at
 * checkpoints past the live window, recorded only once stored and read back, then trimmed from
 * the live store; a segment put by a round that died before recording it is adopted; two
 * archivers never archive the same range.
 */

closeOpenedAfterEach();

const BACKENDS = storeBackends('keybrake-i23-');

const T0 = Date.parse('2026-06-01T12:00:00.000Z');
const signer = CheckpointSigner.fromPem(CheckpointSigner.generatePem());

const keyRecord = (keyId: string): VaultKeyRecord => testKeyRecord(keyId, T0);

const record = (i: number, keyId: string | null): AuditInput =>
  testAuditInput(keyId, T0 + i * 1000, { costMicros: 1000 * i, vendorRequestId: `req_${i}` });

/** A store with `records` audit records spread over two keys and key-less calls. */
async function filled(backend: (typeof BACKENDS)[number], records: number): Promise<{ store: Store; keys: string[] }> {
  const store = await backend.open();
  const keys = [`vk_${randomUUID()}`, `vk_${randomUUID()}`];
  for (const keyId of keys) await store.createKey(keyRecord(keyId));
  for (let i = 1; i <= records; i += 1)
    await store.appendAudit(record(i, i % 5 === 0 ? null : (keys[i % 2] as string)));
  expect((await store.completeAuditHead()).records).toBe(records);
  return { store, keys };
}

function archiver(store: Store, sink: DirectorySink, overrides: Partial<ArchiverOptions> = {}): Archiver {
  return testArchiver({ store, sink, signer, ...overrides });
}

function newSink(): DirectorySink {
  return new DirectorySink(mkdtempSync(join(tmpdir(), 'keybrake-i23-sink-')));
}

async function live(store: Store): Promise<AuditEntry[]> {
  return store.readAudit(0, 1000);
}

describe.each(BACKENDS)('issue 23: the archiver ($name)', (backend) => {
  it('archives checkpointed ranges past the live window, then trims them; the head and seqs go on', async () => {
    const { store, keys } = await filled(backend, 27);
    const before = await live(store);
    const sink = newSink();
    const worker = archiver(store, sink);

    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 1, lastSeq: 10, adopted: false });
    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 11, lastSeq: 20 });
    // 27 records, 5 live: up to 22 may go, in segments of at most 10.
    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 21, lastSeq: 22 });
    expect(await worker.runOnce()).toEqual({ kind: 'idle' });
    expect(await sink.list()).toEqual([segmentName(1, 10), segmentName(11, 20), segmentName(21, 22)]);

    const state = await store.archiveState();
    expect(state).toEqual({ archivedThrough: 22, archivedHead: before[21]?.hash, segments: 3, trimmedThrough: 22 });
    expect((await live(store)).map((entry) => entry.seq)).toEqual([23, 24, 25, 26, 27]);
    expect(await live(store)).toEqual(before.slice(22));
    expect(await store.auditHead()).toEqual({ records: 27, head: before[26]?.hash });

    // The segments hold exactly the records trimmed, each with a checkpoint at its last record.
    const archived: AuditEntry[] = [];
    for (const name of await sink.list()) {
      const segment = decodeSegment((await sink.get(name)) as Buffer);
      archived.push(...segment.entries);
      expect(segment.checkpoints.at(-1)).toMatchObject({ records: segment.header.last_seq, head: segment.header.head });
    }
    expect(archived).toEqual(before.slice(0, 22));
    expect((await store.listCheckpoints()).map((c) => c.records)).toEqual([10, 20, 22]);

    // New records chain on from the head: the seq never restarts.
    await store.appendAudit(record(28, keys[0] as string));
    await store.completeAuditHead();
    const after = await store.readAudit(27, 10);
    expect(after.map((entry) => [entry.seq, entry.prevHash])).toEqual([[28, before[26]?.hash]]);
    // A key's calls are its live records only (on Redis Cluster the families' lists are not
    // trimmed: its calls still list the archived ones too).
    const calls = (await store.listCalls(keys[0] as string)).map((call) => call.seq);
    const liveOfKey = (await live(store))
      .filter((entry) => (JSON.parse(entry.record) as { key_id: string }).key_id === keys[0])
      .map((entry) => entry.seq);
    expect(liveOfKey.length).toBeGreaterThan(0);
    if (backend.name === 'redis cluster') expect(calls.slice(-liveOfKey.length)).toEqual(liveOfKey);
    else expect(calls).toEqual(liveOfKey);
    expect(await store.auditMissing()).toBe(0);
  });

  it('archives records older than the live window, however few records there are', async () => {
    const { store } = await filled(backend, 12);
    const sink = newSink();
    // Records 1..12 are at T0 + i s; with the clock at T0 + 14 s and a 6 s window, 1..7 are older.
    // On Redis the chain's order is the sealer's (family by family), not quite the calls' order:
    // the archive takes the records in chain order up to the first one inside the window.
    const entries = await live(store);
    const young = entries.findIndex(
      (entry) => Date.parse((JSON.parse(entry.record) as { at: string }).at) >= T0 + 8000,
    );
    expect(young).toBeGreaterThan(0);
    const worker = archiver(store, sink, { liveRecords: 1000, liveMs: 6000, now: () => T0 + 14_000 });
    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 1, lastSeq: young });
    expect(await worker.runOnce()).toEqual({ kind: 'idle' });
    expect((await live(store))[0]?.seq).toBe(young + 1);
    if (backend.name === 'embedded') expect(young).toBe(7);
  });

  it('adopts a segment a round put but did not record (killed between put and record), and never puts another over it', async () => {
    const { store } = await filled(backend, 16);
    const entries = await live(store);
    const sink = newSink();
    // What a round that died after its put left: a checkpoint at 8 and the segment 1..8 in the sink.
    const checkpoint = signer.sign({ records: 8, head: entries[7]?.hash as string }, new Date(T0).toISOString());
    await store.addCheckpoint(checkpoint);
    const left = encodeSegment({ entries: entries.slice(0, 8), checkpoints: [checkpoint], publicKeys: [] });
    await sink.put(left.name, left.body, left.sha256);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 0, archivedHead: GENESIS_HASH });

    const worker = archiver(store, sink);
    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 1, lastSeq: 8, adopted: true });
    expect(await worker.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 9, lastSeq: 11, adopted: false });
    expect(await sink.list()).toEqual([segmentName(1, 8), segmentName(9, 11)]);
    expect((await sink.get(left.name))?.equals(left.body)).toBe(true);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 11, segments: 2, trimmedThrough: 11 });
  });

  it('stops at a segment in the sink that does not hold the live records, and trims nothing', async () => {
    const { store } = await filled(backend, 12);
    const entries = await live(store);
    const sink = newSink();
    const checkpoint = signer.sign({ records: 4, head: entries[3]?.hash as string }, new Date(T0).toISOString());
    const edited = entries
      .slice(0, 4)
      .map((entry, i) => (i === 2 ? { ...entry, record: entry.record.replace(/"req_\d+"/, '"req_X"') } : entry));
    expect(edited[2]?.record).not.toBe(entries[2]?.record);
    const foreign = encodeSegment({ entries: edited, checkpoints: [checkpoint], publicKeys: [] });
    await sink.put(foreign.name, foreign.body, foreign.sha256);
    const worker = archiver(store, sink);
    await expect(worker.runOnce()).rejects.toMatchObject({ reason: 'segment_conflict' });
    expect(worker.snapshot().errors).toEqual({ segment_conflict: 1 });
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 0, trimmedThrough: 0 });
    expect(await live(store)).toEqual(entries);
  });

  it('lets one of two racing archivers work at a time: no range archived twice, no segment overlapping another', async () => {
    const { store } = await filled(backend, 45);
    const before = await live(store);
    const sink = newSink();
    const a = archiver(store, sink);
    const b = archiver(store, sink);
    const outcomes = [];
    for (let round = 0; round < 6; round += 1) outcomes.push(...(await Promise.all([a.runOnce(), b.runOnce()])));
    const archivedRounds = outcomes.filter((outcome) => outcome.kind === 'archived');
    // Only the lease holder (the first to ask) archives; the other is told it is not the leader.
    expect(outcomes.filter((outcome) => outcome.kind === 'not_leader')).toHaveLength(6);
    expect(archivedRounds.map((outcome) => 'firstSeq' in outcome && [outcome.firstSeq, outcome.lastSeq])).toEqual([
      [1, 10],
      [11, 20],
      [21, 30],
      [31, 40],
    ]);
    expect(await sink.list()).toEqual([
      segmentName(1, 10),
      segmentName(11, 20),
      segmentName(21, 30),
      segmentName(31, 40),
    ]);
    expect(await store.archiveState()).toMatchObject({ archivedThrough: 40, segments: 4, trimmedThrough: 40 });
    expect(await live(store)).toEqual(before.slice(40));

    // The holder stops: its lease is given up, and the other takes over.
    const leader = archivedRounds.length > 0 && (await a.runOnce()).kind !== 'not_leader' ? a : b;
    const other = leader === a ? b : a;
    await store.appendAudit(record(46, null));
    await store.appendAudit(record(47, null));
    await store.appendAudit(record(48, null));
    await store.appendAudit(record(49, null));
    await store.appendAudit(record(50, null));
    await store.completeAuditHead();
    await leader.stop();
    expect(await other.runOnce()).toMatchObject({ kind: 'archived', firstSeq: 41, lastSeq: 45 });
  });
});
