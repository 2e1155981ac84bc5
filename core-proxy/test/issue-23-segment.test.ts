import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { DirectorySink } from '../src/archive/directory-sink.js';
import {
  SegmentFormatError,
  decodeSegment,
  encodeSegment,
  parseSegmentName,
  segmentName,
  sha256Hex,
} from '../src/archive/segment.js';
import { ArchiveSinkError } from '../src/archive/sink.js';
import { CheckpointSigner, parseStoredRecord, trustedKeys, verifyAuditChain } from '../src/audit/checkpoints.js';
import { GENESIS_HASH } from '../src/audit/chain.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { AuditCheckpoint, AuditEntry } from '../src/store/store.js';

/**
 * Issue 23: the archive's segment format and the directory sink, on records and checkpoints of a
 * real embedded store.
 */

const stores: SqliteStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((store) => store.close()));
});

const signer = CheckpointSigner.fromPem(CheckpointSigner.generatePem());
const publicKeys = [{ key_id: signer.keyId, pem: signer.publicKeyPem() }];

/** A store with `records` audit records and a checkpoint at each of `checkpointAt`. */
async function chain(
  records: number,
  checkpointAt: readonly number[],
): Promise<{
  entries: AuditEntry[];
  checkpoints: AuditCheckpoint[];
  store: SqliteStore;
}> {
  const store = new SqliteStore({ dataDir: mkdtempSync(join(tmpdir(), 'keybrake-i23-seg-')) });
  stores.push(store);
  const checkpoints: AuditCheckpoint[] = [];
  for (let i = 1; i <= records; i += 1) {
    await store.appendAudit({
      at: new Date(Date.UTC(2026, 5, 1, 12, 0, i)).toISOString(),
      keyId: i % 3 === 0 ? null : `key_${i % 2}`,
      vendor: 'openai',
      method: 'POST',
      path: '/v1/chat/completions',
      outcome: i % 4 === 0 ? 'blocked' : 'forwarded',
      reason: i % 4 === 0 ? 'cap_exhausted' : null,
      status: i % 4 === 0 ? 402 : 200,
      costMicros: 1234 * i,
      vendorRequestId: `req_${i}`,
      idempotencyKey: null,
      agentRunLabel: 'run "quoted" ü',
      tainted: false,
    });
    if (checkpointAt.includes(i)) {
      const checkpoint = signer.sign(await store.auditHead(), new Date(Date.UTC(2026, 5, 1, 13, 0, i)).toISOString());
      await store.addCheckpoint(checkpoint);
      checkpoints.push(checkpoint);
    }
  }
  return { entries: await store.readAudit(0, records), checkpoints, store };
}

describe('issue 23: segment names', () => {
  it('pads both seqs to 12 digits and parses them back', () => {
    expect(segmentName(1, 1000)).toBe('segments/000000000001-000000001000.jsonl.gz');
    expect(parseSegmentName('segments/000000000001-000000001000.jsonl.gz')).toEqual({ firstSeq: 1, lastSeq: 1000 });
    // Sorted as text, they are sorted by seq.
    expect([segmentName(1001, 2000), segmentName(1, 1000), segmentName(2001, 10_000)].sort()).toEqual([
      segmentName(1, 1000),
      segmentName(1001, 2000),
      segmentName(2001, 10_000),
    ]);
  });

  it('refuses what is not a segment name', () => {
    for (const name of [
      'segments/1-1000.jsonl.gz',
      '000000000001-000000001000.jsonl.gz',
      'segments/000000000010-000000000001.jsonl.gz',
      'segments/000000000000-000000000001.jsonl.gz',
      'segments/000000000001-000000001000.jsonl',
      'segments/../000000000001-000000001000.jsonl.gz',
    ]) {
      expect(parseSegmentName(name), name).toBeUndefined();
    }
    expect(() => segmentName(0, 3)).toThrow(SegmentFormatError);
    expect(() => segmentName(5, 4)).toThrow(SegmentFormatError);
  });
});

describe('issue 23: segment encoding', () => {
  it('round-trips records and checkpoints, and what it decodes verifies as the chain', async () => {
    const { entries, checkpoints } = await chain(12, [4, 9, 12]);
    const range = entries.slice(4, 12); // seqs 5..12
    const segment = encodeSegment({ entries: range, checkpoints, publicKeys });
    expect(segment.name).toBe(segmentName(5, 12));
    expect(segment.sha256).toBe(sha256Hex(segment.body));
    const decoded = decodeSegment(segment.body);
    expect(decoded.header).toMatchObject({
      type: 'keybrake.audit.segment',
      version: 1,
      first_seq: 5,
      last_seq: 12,
      prev_hash: entries[3]?.hash,
      head: entries[11]?.hash,
      created_at: checkpoints[2]?.at,
      public_keys: publicKeys,
    });
    // The record text is the stored (canonical) text, byte for byte.
    expect(decoded.entries).toEqual(range);
    // Only the checkpoints inside the range; the last one covers its last record.
    expect(decoded.checkpoints).toEqual([checkpoints[1], checkpoints[2]]);

    const first = encodeSegment({ entries: entries.slice(0, 4), checkpoints, publicKeys });
    expect(decodeSegment(first.body).header.prev_hash).toBe(GENESIS_HASH);
    const all = [...decodeSegment(first.body).entries, ...decoded.entries];
    const result = await verifyAuditChain({
      head: { records: 12, head: entries[11]?.hash as string },
      entries: (async function* () {
        for (const entry of all) yield { ...entry, record: parseStoredRecord(entry.record) };
      })(),
      checkpoints: [...decodeSegment(first.body).checkpoints, ...decoded.checkpoints],
      trusted: trustedKeys([signer.publicKeyPem()]),
      rejectUntrusted: true,
    });
    expect(result).toMatchObject({ ok: true, records: 12, checkpoints: 3, lastCheckpointRecords: 12 });
  });

  it('gives the same bytes for the same records (a re-encoded segment is idempotent to put)', async () => {
    const { entries, checkpoints } = await chain(5, [5]);
    const a = encodeSegment({ entries, checkpoints, publicKeys });
    const b = encodeSegment({
      entries: entries.map((entry) => ({ ...entry })),
      checkpoints: [...checkpoints],
      publicKeys,
    });
    expect(b.body.equals(a.body)).toBe(true);
    expect(b.sha256).toBe(a.sha256);
  });

  it('is cut only at a checkpointed seq, over contiguous records', async () => {
    const { entries, checkpoints } = await chain(6, [3]);
    expect(() => encodeSegment({ entries, checkpoints, publicKeys })).toThrow(
      expect.objectContaining({ name: 'SegmentFormatError', problem: 'bad_input' }),
    );
    const gap = [entries[0], entries[2]] as AuditEntry[];
    expect(() => encodeSegment({ entries: gap, checkpoints, publicKeys })).toThrow(/not contiguous/);
    // A checkpoint at the seq but with another head (a rewritten record) does not cover it.
    const forged = { ...(checkpoints[0] as AuditCheckpoint), head: 'f'.repeat(64) };
    expect(() => encodeSegment({ entries: entries.slice(0, 3), checkpoints: [forged], publicKeys })).toThrow(
      SegmentFormatError,
    );
    expect(() => encodeSegment({ entries: [], checkpoints, publicKeys })).toThrow(SegmentFormatError);
  });

  it('reports every way bytes fail to be a segment as a typed error', async () => {
    const { entries, checkpoints } = await chain(3, [3]);
    const good = encodeSegment({ entries, checkpoints, publicKeys });
    const lines = decodeSegmentText(good.body);
    const cases: [string, Buffer, string, number | undefined][] = [
      ['not gzip', Buffer.from('plain text'), 'not_gzip', undefined],
      ['truncated gzip', good.body.subarray(0, good.body.length - 10), 'not_gzip', undefined],
      ['empty', gzipSync(Buffer.alloc(0)), 'empty', undefined],
      ['header not JSON', gz(['{nope', ...lines.slice(1)]), 'not_json', 1],
      ['an export header', gz([lines[0]?.replace('keybrake.audit.segment', 'keybrake.audit.export') ?? '']), 'bad_header', 1],
      ['header without head', gz([JSON.stringify({ ...JSON.parse(lines[0] as string), head: undefined })]), 'bad_header', 1],
      ['a record line without hash', gz([lines[0] as string, JSON.stringify({ type: 'record', seq: 1, prev_hash: GENESIS_HASH, record: {} })]), 'bad_record_line', 2],
      ['an array line', gz([lines[0] as string, '[1,2]']), 'not_json', 2],
      ['an unknown line', gz([lines[0] as string, JSON.stringify({ type: 'note' })]), 'unexpected_line', 2],
      ['a record after a checkpoint', gz([lines[0] as string, lines[4] as string, lines[1] as string]), 'unexpected_line', 3],
      ['a checkpoint without signature', gz([lines[0] as string, JSON.stringify({ type: 'checkpoint', records: 3, head: 'x', at: 'y', key_id: 'z' })]), 'bad_checkpoint_line', 2],
    ]; // prettier-ignore
    for (const [what, body, problem, line] of cases) {
      let caught: unknown;
      try {
        decodeSegment(body);
      } catch (error) {
        caught = error;
      }
      expect(caught, what).toBeInstanceOf(SegmentFormatError);
      expect((caught as SegmentFormatError).problem, what).toBe(problem);
      expect((caught as SegmentFormatError).line, what).toBe(line);
    }
    // An edited record still decodes (its hash no longer matches: that is the verifier's finding).
    const edited = gz([
      lines[0] as string,
      (lines[1] as string).replace('"cost_usd":0.001234', '"cost_usd":0.000001'),
      ...lines.slice(2),
    ]);
    expect(decodeSegment(edited).entries[0]?.record).toContain('"cost_usd":0.000001');
  });
});

function decodeSegmentText(body: Buffer): string[] {
  return gunzipSync(body).toString('utf8').trimEnd().split('\n');
}

function gz(lines: readonly string[]): Buffer {
  return gzipSync(Buffer.from(`${lines.join('\n')}\n`));
}

describe('issue 23: the directory sink', () => {
  it('puts, stats, gets and lists segments, and a second put of the same bytes succeeds', async () => {
    const { entries, checkpoints } = await chain(6, [3, 6]);
    const root = mkdtempSync(join(tmpdir(), 'keybrake-i23-dir-'));
    const sink = new DirectorySink(root);
    expect(sink.describe()).toBe(`dir:${root}`);
    expect(await sink.list()).toEqual([]);
    expect(await sink.get(segmentName(1, 3))).toBeUndefined();
    expect(await sink.stat(segmentName(1, 3))).toBeUndefined();

    const second = encodeSegment({ entries: entries.slice(3), checkpoints, publicKeys });
    const first = encodeSegment({ entries: entries.slice(0, 3), checkpoints, publicKeys });
    await sink.put(second.name, second.body, second.sha256);
    await sink.put(first.name, first.body, first.sha256);
    await sink.put(first.name, Buffer.from(first.body), first.sha256);

    expect(await sink.list()).toEqual([first.name, second.name]);
    expect(await sink.stat(first.name)).toEqual({ size: first.body.length, sha256: first.sha256 });
    expect((await sink.get(second.name))?.equals(second.body)).toBe(true);
    // Nothing but the two segments (no temporary file left behind).
    expect(readdirSync(join(root, 'segments')).sort()).toEqual([first.name, second.name].map((n) => n.slice(9)));
  });

  it('refuses other bytes under an existing name and keeps the stored segment as it was', async () => {
    const { entries, checkpoints } = await chain(4, [2, 4]);
    const sink = new DirectorySink(mkdtempSync(join(tmpdir(), 'keybrake-i23-dir-')));
    const segment = encodeSegment({ entries: entries.slice(0, 2), checkpoints, publicKeys });
    await sink.put(segment.name, segment.body, segment.sha256);
    const other = encodeSegment({
      entries: entries.slice(0, 2),
      checkpoints,
      publicKeys,
      createdAt: '2030-01-01T00:00:00.000Z',
    });
    expect(other.sha256).not.toBe(segment.sha256);
    await expect(sink.put(segment.name, other.body, other.sha256)).rejects.toMatchObject({
      name: 'ArchiveSinkError',
      reason: 'segment_conflict',
    });
    expect((await sink.get(segment.name))?.equals(segment.body)).toBe(true);
    // Bytes that do not match the hash given are not written at all.
    const next = encodeSegment({ entries: entries.slice(2), checkpoints, publicKeys });
    await expect(sink.put(next.name, next.body, segment.sha256)).rejects.toBeInstanceOf(ArchiveSinkError);
    expect(await sink.stat(next.name)).toBeUndefined();
  });

  it('accepts only segment names, and lists only segments', async () => {
    const root = mkdtempSync(join(tmpdir(), 'keybrake-i23-dir-'));
    const sink = new DirectorySink(root);
    const body = Buffer.from('x');
    await expect(sink.put('../escape.jsonl.gz', body, sha256Hex(body))).rejects.toMatchObject({
      reason: 'sink_misconfigured',
    });
    await expect(sink.get('segments/../../etc/passwd')).rejects.toBeInstanceOf(ArchiveSinkError);
    const { entries, checkpoints } = await chain(1, [1]);
    const segment = encodeSegment({ entries, checkpoints, publicKeys });
    await sink.put(segment.name, segment.body, segment.sha256);
    writeFileSync(join(root, 'segments', 'notes.txt'), 'not a segment');
    writeFileSync(join(root, 'segments', '.tmp-leftover'), 'a crashed put');
    expect(await sink.list()).toEqual([segment.name]);
  });

  it('says the sink is unavailable when its directory cannot be written', async () => {
    const root = mkdtempSync(join(tmpdir(), 'keybrake-i23-dir-'));
    writeFileSync(join(root, 'file'), 'a file where the directory should be');
    const sink = new DirectorySink(join(root, 'file'));
    const { entries, checkpoints } = await chain(1, [1]);
    const segment = encodeSegment({ entries, checkpoints, publicKeys });
    await expect(sink.put(segment.name, segment.body, segment.sha256)).rejects.toMatchObject({
      reason: 'sink_unavailable',
    });
  });
});
