import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DirectorySink } from '../src/archive/directory-sink.js';
import { segmentName } from '../src/archive/segment.js';
import {
  addOverlappingSegment,
  alterSignature,
  chainOfTwelve,
  cutGzip,
  cutLastLines,
  directoryStorage,
  editRecord,
  resignSegment,
  runCli,
  segmentsOfTwelve,
  swapSegments,
} from './archive-segments.js';

/**
 * Issue 23: `keybrake audit verify-archive` checks an archive offline, with nothing but the
 * segments and the proxy's public key, and names the first bad seq of every kind of tampering.
 * The segments here are cut from a real proxy's chain (its export, its signed checkpoints) with the
 * archive's own encoder, into a real directory sink; the archiver writing them itself, and the same
 * tampering seen by `GET /audit/verify` on both stores, are in issue-23-verify.test.ts.
 */

/** Records 1..12 of a real chain, checkpointed at 3, 4, 8 and 12, as segments 1-4, 5-8, 9-12. */
async function archiveOfTwelve() {
  const { entries, checkpoints, publicKey, checkpointLog } = await chainOfTwelve();
  const root = mkdtempSync(join(tmpdir(), 'keybrake-archive-'));
  onTestFinished(() => rmSync(root, { recursive: true, force: true }));
  const sink = new DirectorySink(join(root, 'archive'));
  for (const segment of segmentsOfTwelve({ entries, checkpoints, publicKey, checkpointLog })) {
    await sink.put(segment.name, segment.body, segment.sha256);
  }
  const keyFile = join(root, 'proxy.pub.pem');
  writeFileSync(keyFile, publicKey.pem);
  // The auditor's copy of the newest checkpoint, as the proxy logged it.
  const logFile = join(root, 'proxy.log');
  writeFileSync(logFile, checkpointLog);
  /** A fresh copy of the archive to tamper with. */
  const copy = (): { dir: string; storage: ReturnType<typeof directoryStorage> } => {
    const dir = mkdtempSync(join(root, 'copy-'));
    cpSync(join(root, 'archive'), dir, { recursive: true });
    return { dir, storage: directoryStorage(dir) };
  };
  return { root, keyFile, logFile, copy, entries };
}

const verifyArchive = (dir: string, keyFile: string, ...extra: string[]) =>
  runCli(['audit', 'verify-archive', '--sink', `dir:${dir}`, '--public-key', keyFile, ...extra]);

/** The verdict a failed verification prints on stderr. */
function verdict(run: { code: number; stderr: string }): Record<string, unknown> {
  expect(run.code, run.stderr).toBe(1);
  return JSON.parse(run.stderr) as Record<string, unknown>;
}

describe('issue 23: keybrake audit verify-archive (offline, directory sink)', () => {
  it('verifies a whole archive, and names the first bad seq of each tampering', async () => {
    const archive = await archiveOfTwelve();
    const s1 = segmentName(1, 4);
    const s2 = segmentName(5, 8);
    const s3 = segmentName(9, 12);

    const whole = archive.copy();
    const ok = await verifyArchive(whole.dir, archive.keyFile, '--checkpoints', archive.logFile);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({
      ok: true,
      records: 12,
      head: archive.entries[11]?.hash,
      segments: 3,
      newest_given_checkpoint: 12,
    });

    // A segment deleted: the gap starts at its first seq.
    const deleted = archive.copy();
    await deleted.storage.remove(s2);
    expect(verdict(await verifyArchive(deleted.dir, archive.keyFile))).toMatchObject({
      ok: false,
      first_bad_seq: 5,
      reason: 'segment_missing',
    });

    // The newest segment deleted: the archive alone cannot tell (it ends at a valid checkpoint);
    // the proxy's logged checkpoint of record 12 can.
    const newestGone = archive.copy();
    await newestGone.storage.remove(s3);
    const alone = await verifyArchive(newestGone.dir, archive.keyFile);
    expect(alone.code).toBe(0);
    expect(JSON.parse(alone.stdout)).toMatchObject({ ok: true, records: 8 });
    expect(alone.stderr).toContain('--checkpoints');
    expect(
      verdict(await verifyArchive(newestGone.dir, archive.keyFile, '--checkpoints', archive.logFile)),
    ).toMatchObject({ first_bad_seq: 9, reason: 'segment_missing' });

    // Two swapped (each under the other's name).
    const swapped = archive.copy();
    await swapSegments(swapped.storage, s1, s2);
    expect(verdict(await verifyArchive(swapped.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 1,
      reason: 'segment_reordered',
      segment: s1,
    });

    // Truncated: the checkpoint line and the last record cut (the 8th of 5..8 is the first gone).
    const cut = archive.copy();
    await cutLastLines(cut.storage, s2, 2);
    expect(verdict(await verifyArchive(cut.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 8,
      reason: 'segment_truncated',
    });

    // The gzip cut mid-stream: the first record not readable whole is the first bad one.
    const gzipCut = archive.copy();
    const readable = await cutGzip(gzipCut.storage, s3, 0.6);
    // Line 1 is the header, then records 9, 10, ...: `readable - 1` records survive.
    const firstUnreadable = 9 + Math.max(0, readable - 1);
    expect(verdict(await verifyArchive(gzipCut.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: Math.min(firstUnreadable, 12),
      reason: 'segment_truncated',
      segment: s3,
    });

    // A record edited (its stored hash kept), re-gzipped.
    const edited = archive.copy();
    await editRecord(edited.storage, s2, 6, (record) => {
      record.cost_usd = 0.01;
    });
    expect(verdict(await verifyArchive(edited.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 6,
      reason: 'record_edited',
    });

    // A segment overlapping others (records 7..12, a valid checkpoint at 12).
    const overlapping = archive.copy();
    await addOverlappingSegment(overlapping.storage, 7, 12);
    expect(verdict(await verifyArchive(overlapping.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 7,
      reason: 'segment_overlap',
    });

    // A checkpoint signature altered: the one inside segment 1 (at 3), then the covering one (at 4).
    const inner = archive.copy();
    await alterSignature(inner.storage, s1, 3);
    expect(verdict(await verifyArchive(inner.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 1,
      reason: 'signature_invalid',
    });
    const covering = archive.copy();
    await alterSignature(covering.storage, s1, 4);
    expect(verdict(await verifyArchive(covering.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 4,
      reason: 'signature_invalid',
    });

    // A segment re-signed with another key (and that key named in its header).
    const resigned = archive.copy();
    await resignSegment(resigned.storage, s3);
    expect(verdict(await verifyArchive(resigned.dir, archive.keyFile))).toMatchObject({
      first_bad_seq: 9,
      reason: 'checkpoint_untrusted',
    });
  });

  it('says how it was used wrongly (exit 2) and what it could not read (exit 1)', async () => {
    const noKey = await runCli(['audit', 'verify-archive', '--sink', 'dir:/nonexistent']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('--public-key');
    const badSink = await runCli(['audit', 'verify-archive', '--sink', 'ftp://x', '--public-key', '/dev/null']);
    expect(badSink.code).toBe(2);
  });
});
