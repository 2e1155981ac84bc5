import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { GENESIS_HASH, chainHash } from '../audit/chain.js';
import {
  type AuditFailureReason,
  type AuditVerification,
  type TrustedKeys,
  checkpointOf,
  checkpointSignatureValid,
  parseStoredRecord,
  verificationJson,
  verifyAuditChain,
} from '../audit/checkpoints.js';
import type { AuditRecordJson } from '../audit/record.js';
import type { AuditCheckpoint, AuditEntry, AuditHead, Store } from '../store/store.js';
import { SEGMENT_TYPE, decodeSegment, parseSegmentName } from './segment.js';
import type { ArchiveSink } from './sink.js';

/**
 * One verification across the archive and the live store (issue 23): from genesis through every
 * archived segment to the live head. The same code runs in the server (`GET /audit/verify`,
 * `keybrake audit verify`) and offline on nothing but the archive and a public key
 * (`keybrake audit verify-archive`). It streams: one segment is read at a time, and of it only the
 * record hashes are kept (to hold the segment's checkpoints against them).
 *
 * Where a failure is a signature (`signature_invalid`, `checkpoint_untrusted`, `checkpoint_mismatch`,
 * `segment_unsigned`), `firstBadSeq` is the first record no valid checkpoint vouches for: the one
 * after the newest checkpoint that still verified.
 */

/** Why an archive failed verification, beyond the live chain's reasons. */
export type ArchiveFailureReason =
  | AuditFailureReason
  /** No segment holds this seq (deleted, or never written), or the archive ends before the store says. */
  | 'segment_missing'
  /** Two segments hold this seq. */
  | 'segment_overlap'
  /** A segment's records stop before its last seq, or its checkpoint lines were cut. */
  | 'segment_truncated'
  /** A record's hash is not the hash of its content: edited. */
  | 'record_edited'
  /** A record is missing from the middle of a segment. */
  | 'record_missing'
  /** A segment's content is not what its name says (renamed, swapped). */
  | 'segment_reordered'
  /** A checkpoint claims a trusted key and its signature does not verify. */
  | 'signature_invalid'
  /** A segment is not gzip of segment lines. */
  | 'segment_unreadable'
  /** A segment carries no valid checkpoint over its last record. */
  | 'segment_unsigned'
  /** Records are archived but the proxy has no archive to read them from, or cannot reach it. */
  | 'archive_unavailable';

/** Every reason a verification can fail with, as `GET /audit/verify` and the CLI name them. */
export const CHAIN_FAILURE_REASONS: readonly ArchiveFailureReason[] = [
  'chain_broken',
  'truncated',
  'checkpoint_mismatch',
  'checkpoint_signature_invalid',
  'checkpoint_untrusted',
  'records_missing',
  'segment_missing',
  'segment_overlap',
  'segment_truncated',
  'record_edited',
  'record_missing',
  'segment_reordered',
  'signature_invalid',
  'segment_unreadable',
  'segment_unsigned',
  'archive_unavailable',
];

/** What the verifier reads segments from: any archive sink (`list` and `get` only). */
export type SegmentSource = Pick<ArchiveSink, 'list' | 'get' | 'describe'>;

/** A failure with where it was found. */
export interface ArchiveFailure {
  readonly ok: false;
  /** Records verified before the failure. */
  readonly records: number;
  readonly firstBadSeq: number;
  readonly reason: ArchiveFailureReason;
  /** The segment at fault, when one is. */
  readonly segment?: string;
  /** With `records_missing`: how many records the store holds outside the chain. */
  readonly missingRecords?: number;
  /** With `archive_unavailable` and `segment_unreadable`: what the sink or the decoder said. */
  readonly detail?: string;
}

/** The archive verified, up to its last segment. */
export interface ArchiveSuccess {
  readonly ok: true;
  /** The last archived seq (0: no segment). */
  readonly records: number;
  /** Hash of the last archived record (64 zeros: none). */
  readonly head: string;
  readonly segments: number;
  /** Trusted checkpoints verified (the segments' own and those given). */
  readonly checkpoints: number;
  /** Checkpoints signed by keys not trusted, not used (given ones only; a segment's are never skipped). */
  readonly untrustedCheckpoints: number;
  /** The head at each segment's end, by its last seq: where the live chain may continue from. */
  readonly boundaries: ReadonlyMap<number, string>;
}

export type ArchiveVerification = ArchiveSuccess | ArchiveFailure;

/** Options of {@link verifyArchive}. */
export interface VerifyArchiveOptions {
  readonly source: SegmentSource;
  readonly trusted: TrustedKeys;
  /**
   * Checkpoints kept elsewhere (the store's, or the proxy's log) held against the archive; one
   * beyond its last segment means the newest segments are missing.
   */
  readonly checkpoints: readonly AuditCheckpoint[];
  /**
   * A given checkpoint signed by a key not trusted is a failure (an auditor who pinned the key),
   * not merely left out.
   * @default false
   */
  readonly rejectUntrusted?: boolean;
  /**
   * The archive must reach at least this seq (the store's `archivedThrough`); given checkpoints
   * beyond the archive's end are then left to the live chain.
   * @default the newest given checkpoint: the archive must reach every one
   */
  readonly through?: number;
  /**
   * Continue after a verified segment ending at `seq` with hash `head`: only later segments are
   * read (a walk resumed because the archive moved meanwhile).
   * @default genesis
   */
  readonly from?: { readonly seq: number; readonly head: string };
}

const fail = (
  records: number,
  firstBadSeq: number,
  reason: ArchiveFailureReason,
  extra: Omit<ArchiveFailure, 'ok' | 'records' | 'firstBadSeq' | 'reason'> = {},
): ArchiveFailure => ({ ok: false, records, firstBadSeq, reason, ...extra });

/**
 * The lines of a gzip body, as far as they can be read: a stream cut short or corrupt yields every
 * complete line before the cut, then stops with `cut` set (a partial last line is dropped).
 */
async function* segmentLines(body: Buffer, status: { cut: boolean; error?: string }): AsyncGenerator<string> {
  const gunzip = createGunzip();
  let rest = '';
  try {
    for await (const chunk of Readable.from([body]).pipe(gunzip)) {
      const text = rest + (chunk as Buffer).toString('utf8');
      const lines = text.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) yield line;
    }
  } catch (error) {
    status.cut = true;
    status.error = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    return;
  } finally {
    gunzip.destroy();
  }
  if (rest !== '') {
    status.cut = true;
    status.error = 'the last line has no end';
  }
}

function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(line) as unknown;
    return value && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** A segment's checkpoint line: as any checkpoint, with a whole `records`. */
function toCheckpoint(value: Record<string, unknown>): AuditCheckpoint | undefined {
  return Number.isSafeInteger(value.records) ? checkpointOf(value) : undefined;
}

/** Where the walk through the archive stands. */
interface Position {
  /** Last verified seq. */
  seq: number;
  /** Its hash. */
  head: string;
  /** The newest seq a valid checkpoint vouches for. */
  vouched: number;
  checkpoints: number;
  untrusted: number;
}

/**
 * Verifies one segment (`first..last` by its name) continuing from `at`. Returns a failure, or
 * undefined with `at` moved to the segment's end.
 */
async function verifySegment(
  name: string,
  body: Buffer,
  range: { firstSeq: number; lastSeq: number },
  at: Position,
  given: readonly AuditCheckpoint[],
  options: VerifyArchiveOptions,
): Promise<ArchiveFailure | undefined> {
  const { firstSeq, lastSeq } = range;
  const status: { cut: boolean; error?: string } = { cut: false };
  const lines = segmentLines(body, status)[Symbol.asyncIterator]();
  const bad = (seq: number, reason: ArchiveFailureReason, detail?: string): ArchiveFailure =>
    fail(at.seq, seq, reason, { segment: name, ...(detail === undefined ? {} : { detail }) });
  try {
    const first = await lines.next();
    const header = first.done ? undefined : parseObject(first.value);
    if (!header || header.type !== SEGMENT_TYPE || header.version !== 1) {
      return bad(firstSeq, status.cut && first.done ? 'segment_truncated' : 'segment_unreadable', status.error);
    }
    // A segment renamed (two swapped) still says inside which records it holds.
    if (header.first_seq !== firstSeq || header.last_seq !== lastSeq) return bad(firstSeq, 'segment_reordered');
    if (header.prev_hash !== at.head) return bad(firstSeq, 'chain_broken');

    // Only the hashes are kept, to hold the checkpoints (after the records) against them.
    const hashes: string[] = [];
    let prevHash = at.head;
    let line: IteratorResult<string> = await lines.next();
    for (let seq = firstSeq; seq <= lastSeq; seq += 1, line = await lines.next()) {
      if (line.done) return bad(seq, 'segment_truncated', status.error);
      const value = parseObject(line.value);
      if (!value) return bad(seq, 'segment_unreadable', 'a line is not JSON');
      if (value.type !== 'record') return bad(seq, 'segment_truncated', 'the records stop before the last seq');
      const record = value.record;
      if (typeof value.seq !== 'number' || value.seq > seq) return bad(seq, 'record_missing');
      if (value.seq < seq) return bad(seq, 'chain_broken');
      if (value.prev_hash !== prevHash) return bad(seq, 'chain_broken');
      const parsed =
        record && typeof record === 'object' && !Array.isArray(record)
          ? (record as AuditRecordJson)
          : typeof record === 'string'
            ? parseStoredRecord(record)
            : undefined;
      if (!parsed || parsed.seq !== seq || chainHash(prevHash, parsed) !== value.hash) return bad(seq, 'record_edited');
      prevHash = value.hash;
      hashes.push(prevHash);
    }
    if (header.head !== prevHash) return bad(lastSeq, 'chain_broken', 'the header head is not the last hash');

    const own: AuditCheckpoint[] = [];
    for (; !line.done; line = await lines.next()) {
      const value = parseObject(line.value);
      const checkpoint = value?.type === 'checkpoint' ? toCheckpoint(value) : undefined;
      if (!checkpoint) return bad(firstSeq, 'segment_unreadable', 'a line after the records is not a checkpoint');
      own.push(checkpoint);
    }
    const inRange = (checkpoint: AuditCheckpoint): boolean =>
      checkpoint.records >= firstSeq && checkpoint.records <= lastSeq;
    if (own.some((checkpoint) => !inRange(checkpoint)))
      return bad(firstSeq, 'segment_unreadable', 'a checkpoint outside the segment');
    const all = [
      ...own.map((checkpoint) => ({ checkpoint, own: true })),
      ...given.filter(inRange).map((checkpoint) => ({ checkpoint, own: false })),
    ].sort((a, b) => a.checkpoint.records - b.checkpoint.records);
    let covered = false;
    let coveredUntrusted = false;
    // What the segment's own checkpoints vouch for: a failure of one of them is reported from the
    // first record after the last of them that verified (a given one may vouch for more).
    let ownVouched = firstSeq - 1;
    for (const { checkpoint, own: isOwn } of all) {
      const from = (isOwn ? ownVouched : at.vouched) + 1;
      const key = options.trusted.get(checkpoint.key_id);
      if (!key) {
        // Pinned keys: any other is a forgery. Otherwise (a replica that sees its siblings' keys)
        // it is left out, but the checkpoint over the segment's end must still be a trusted one.
        if (options.rejectUntrusted) return bad(from, 'checkpoint_untrusted');
        if (isOwn && checkpoint.records === lastSeq) coveredUntrusted = true;
        at.untrusted += 1;
        continue;
      }
      if (!checkpointSignatureValid(checkpoint, key)) return bad(from, 'signature_invalid');
      if (hashes[checkpoint.records - firstSeq] !== checkpoint.head) return bad(from, 'checkpoint_mismatch');
      at.vouched = Math.max(at.vouched, checkpoint.records);
      at.checkpoints += 1;
      if (isOwn) ownVouched = Math.max(ownVouched, checkpoint.records);
      if (isOwn && checkpoint.records === lastSeq) covered = true;
    }
    if (!covered) {
      // Cut after its records: the end of the segment, its checkpoint, is what is gone.
      if (status.cut) return bad(lastSeq, 'segment_truncated', status.error);
      return bad(ownVouched + 1, coveredUntrusted ? 'checkpoint_untrusted' : 'segment_unsigned');
    }
    at.seq = lastSeq;
    at.head = prevHash;
    return undefined;
  } finally {
    await lines.return?.(undefined);
  }
}

/**
 * Verifies every segment of an archive in seq order from genesis: they must tile `1..N` with no
 * gap and no overlap, each continuing the chain from the one before and carrying a valid trusted
 * checkpoint over its last record; given checkpoints are held against the records they name.
 */
export async function verifyArchive(options: VerifyArchiveOptions): Promise<ArchiveVerification> {
  const { source } = options;
  let names: string[];
  try {
    names = await source.list();
  } catch (error) {
    return fail(0, 1, 'archive_unavailable', { detail: (error as Error).message });
  }
  const segments = names
    .map((name) => ({ name, range: parseSegmentName(name) }))
    .filter((segment): segment is { name: string; range: { firstSeq: number; lastSeq: number } } => !!segment.range)
    .sort((a, b) => a.range.firstSeq - b.range.firstSeq || a.range.lastSeq - b.range.lastSeq);
  const given = [...options.checkpoints].sort((a, b) => a.records - b.records);
  const from = options.from ?? { seq: 0, head: GENESIS_HASH };
  const at: Position = { seq: from.seq, head: from.head, vouched: from.seq, checkpoints: 0, untrusted: 0 };
  const boundaries = new Map<number, string>([[from.seq, from.head]]);
  let verified = 0;
  for (const { name, range } of segments) {
    if (range.lastSeq <= from.seq) continue;
    if (range.firstSeq > at.seq + 1) return fail(at.seq, at.seq + 1, 'segment_missing', { segment: name });
    if (range.firstSeq <= at.seq) return fail(at.seq, range.firstSeq, 'segment_overlap', { segment: name });
    let body: Buffer | undefined;
    try {
      body = await source.get(name);
    } catch (error) {
      return fail(at.seq, range.firstSeq, 'archive_unavailable', { segment: name, detail: (error as Error).message });
    }
    if (body === undefined) return fail(at.seq, range.firstSeq, 'segment_missing', { segment: name });
    const failure = await verifySegment(name, body, range, at, given, options);
    if (failure) return failure;
    boundaries.set(at.seq, at.head);
    verified += 1;
  }
  const through = options.through ?? given.at(-1)?.records ?? 0;
  if (at.seq < through) return fail(at.seq, at.seq + 1, 'segment_missing');
  if (options.through === undefined) {
    // Offline: a trusted checkpoint beyond the archive's end shows that its newest segments are gone.
    const beyond = given.find((checkpoint) => {
      const key = options.trusted.get(checkpoint.key_id);
      return checkpoint.records > at.seq && key !== undefined && checkpointSignatureValid(checkpoint, key);
    });
    if (beyond) return fail(at.seq, at.seq + 1, 'segment_missing');
  }
  return {
    ok: true,
    records: at.seq,
    head: at.head,
    segments: verified,
    checkpoints: at.checkpoints,
    untrustedCheckpoints: at.untrusted,
    boundaries,
  };
}

/** The whole chain, archive and live: the figures `GET /audit/verify` adds. */
export type ChainVerification =
  | (Extract<AuditVerification, { ok: true }> & { readonly archivedRecords: number; readonly segments: number })
  | (ArchiveFailure & { readonly archivedRecords: number; readonly segments: number });

/** The live records from `afterSeq`, parsed for verification, a page at a time. */
async function* liveEntries(
  store: Store,
  firstPage: readonly AuditEntry[],
  records: number,
): AsyncGenerator<{ seq: number; record: AuditRecordJson | undefined; prevHash: string; hash: string }> {
  let page = firstPage;
  for (;;) {
    for (const entry of page) yield { ...entry, record: parseStoredRecord(entry.record) };
    const last = page.at(-1);
    if (!last || last.seq >= records) return;
    page = await store.readAudit(last.seq, Math.min(1000, records - last.seq));
    if (page.length === 0) return;
  }
}

/**
 * Verifies a store's chain from genesis through its archive to the live head: the archive up to
 * the store's `archivedThrough` (and any segment written since), the live chain continuing from the
 * archive's head, every checkpoint the store keeps, and no record outside the chain. Without a
 * sink, a store that archived nothing verifies as before; one that did is `archive_unavailable`.
 */
export async function verifyArchiveAndStore(
  store: Store,
  sink: SegmentSource | undefined,
  trusted: TrustedKeys,
): Promise<ChainVerification> {
  // A trim between reading the archive state and reading the live records moves the live start:
  // the walk is retried then, with the new state (a trim only ever moves it forward).
  for (let attempt = 0; ; attempt += 1) {
    const result = await verifyOnce(store, sink, trusted);
    if (result !== 'retry') return result;
    if (attempt >= 4) {
      return {
        ...fail(0, 1, 'archive_unavailable', { detail: 'the archive moved during every attempt' }),
        archivedRecords: 0,
        segments: 0,
      };
    }
  }
}

async function verifyOnce(
  store: Store,
  sink: SegmentSource | undefined,
  trusted: TrustedKeys,
): Promise<ChainVerification | 'retry'> {
  // Counted first: it seals everything written so far, and the head read after it covers them.
  const missing = await store.auditMissing();
  const state = await store.archiveState();
  const checkpoints = await store.listCheckpoints();
  const head: AuditHead = await store.completeAuditHead();
  let start: AuditHead = { records: 0, head: GENESIS_HASH };
  let segments = 0;
  let boundaries: ReadonlyMap<number, string> = new Map([[0, GENESIS_HASH]]);
  if (state.archivedThrough > 0) {
    if (!sink) {
      return {
        ...fail(0, 1, 'archive_unavailable', { detail: 'records are archived but no archive is configured' }),
        archivedRecords: state.archivedThrough,
        segments: 0,
      };
    }
    const archive = await verifyArchive({
      source: sink,
      trusted,
      checkpoints: checkpoints.filter((checkpoint) => checkpoint.records <= state.archivedThrough),
      through: state.archivedThrough,
    });
    if (!archive.ok) return { ...archive, archivedRecords: state.archivedThrough, segments: 0 };
    segments = archive.segments;
    boundaries = archive.boundaries;
    const archivedHead = boundaries.get(state.archivedThrough);
    // The store's own account of what it archived must be the archive's.
    if (archivedHead !== state.archivedHead) {
      return {
        ...fail(archive.records, state.archivedThrough, 'chain_broken', {
          detail: 'the store archive state does not match the archive',
        }),
        archivedRecords: state.archivedThrough,
        segments,
      };
    }
    start = { records: state.archivedThrough, head: archivedHead };
  }
  let firstPage = head.records > start.records ? await store.readAudit(start.records, 1000) : [];
  // Trimmed meanwhile (the archiver runs on, and trims a slice at a time): the records before the
  // first live one are in segments. Continue after the segment that holds the last of them, reading
  // only the segments written since the walk; walk again only if that fails.
  for (let resumed = 0; sink && (firstPage[0]?.seq ?? 0) > start.records + 1; resumed += 1) {
    if (resumed >= 20) return 'retry';
    const gone = (firstPage[0] as AuditEntry).seq - 1;
    const after = (): number | undefined =>
      [...boundaries.keys()]
        .filter((seq) => seq >= gone)
        .reduce<number | undefined>((a, b) => (a === undefined || b < a ? b : a), undefined);
    let end = after();
    if (end === undefined) {
      const last = [...boundaries.keys()].reduce((a, b) => Math.max(a, b), 0);
      const more = await verifyArchive({
        source: sink,
        trusted,
        checkpoints: checkpoints.filter((checkpoint) => checkpoint.records > last),
        through: gone,
        from: { seq: last, head: boundaries.get(last) as string },
      });
      if (!more.ok) return { ...more, archivedRecords: state.archivedThrough, segments };
      segments += more.segments;
      boundaries = new Map([...boundaries, ...more.boundaries]);
      end = after();
      if (end === undefined) return 'retry';
    }
    start = { records: end, head: boundaries.get(end) as string };
    firstPage = head.records > end ? await store.readAudit(end, 1000) : [];
  }
  const live = await verifyAuditChain({
    start,
    head,
    entries: liveEntries(store, firstPage, head.records),
    checkpoints: checkpoints.filter((checkpoint) => checkpoint.records > start.records),
    trusted,
  });
  const archived = { archivedRecords: start.records, segments };
  if (!live.ok) return { ...live, ...archived };
  if (missing > 0) {
    return {
      ...fail(live.records, live.records + 1, 'records_missing', { missingRecords: missing }),
      ...archived,
    };
  }
  return { ...live, ...archived };
}

/**
 * Every record of the chain up to `records`, oldest first, a page at a time: the archived ones read
 * back from the sink one segment at a time, then the live ones. A record trimmed from the store
 * while this runs is read from the segment that holds it. Records the archive cannot give are
 * left out (the export then fails verification there, as it should).
 */
export async function* chainPages(
  store: Store,
  sink: SegmentSource | undefined,
  records: number,
): AsyncGenerator<AuditEntry[]> {
  let after = 0;
  let names: string[] | undefined;
  /** Archived records after `after`, up to `through`, from the segments that hold them. */
  async function* archived(through: number): AsyncGenerator<AuditEntry[]> {
    if (!sink) return;
    names ??= await sink.list();
    for (const name of names) {
      const range = parseSegmentName(name);
      if (!range || range.lastSeq <= after || range.firstSeq > through) continue;
      if (range.firstSeq > after + 1) return;
      const body = await sink.get(name);
      if (body === undefined) return;
      let segment;
      try {
        segment = decodeSegment(body);
      } catch {
        return;
      }
      const page = segment.entries.filter((entry) => entry.seq > after && entry.seq <= through);
      const last = page.at(-1);
      if (!last) return;
      yield page;
      after = last.seq;
    }
  }
  const state = await store.archiveState();
  yield* archived(Math.min(state.archivedThrough, records));
  while (after < records) {
    const page = await store.readAudit(after, Math.min(1000, records - after));
    const first = page[0];
    if (!first) return;
    if (first.seq > after + 1) {
      // Trimmed meanwhile: the records between are in segments written since the list was read.
      names = undefined;
      const before = after;
      yield* archived(first.seq - 1);
      if (after === before) return;
      continue;
    }
    yield page;
    after = (page.at(-1) as AuditEntry).seq;
  }
}

/** A chain verification as `GET /audit/verify` and the CLI print it (the contract's fields first). */
export function chainVerificationJson(result: ChainVerification): Record<string, unknown> {
  if (result.ok) {
    return { ...verificationJson(result), archived_records: result.archivedRecords, segments: result.segments };
  }
  // A store that archived nothing answers as before the archive existed.
  return {
    ...archiveFailureJson(result),
    ...(result.archivedRecords > 0 ? { archived_records: result.archivedRecords } : {}),
  };
}

/** A failure's JSON: `first_bad_seq` and `reason`, and where. */
export function archiveFailureJson(result: ArchiveFailure): Record<string, unknown> {
  return {
    ok: false,
    records: result.records,
    first_bad_seq: result.firstBadSeq,
    reason: result.reason,
    ...(result.segment === undefined ? {} : { segment: result.segment }),
    ...(result.missingRecords === undefined ? {} : { missing_records: result.missingRecords }),
    ...(result.detail === undefined ? {} : { detail: result.detail }),
  };
}
