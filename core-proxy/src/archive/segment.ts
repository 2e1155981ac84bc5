import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gunzipSync, gzip, gzipSync } from 'node:zlib';
import { canonicalJson } from '../audit/canonical-json.js';
import { exportRecordLine } from '../audit/export.js';
import type { AuditCheckpoint, AuditEntry } from '../store/store.js';

/**
 * An archive segment (issue 23): a sealed, checkpointed range `first..last` of the audit chain,
 * written once to an archive sink and never changed. gzip of JSON Lines, in the audit export's
 * line shapes (`audit/export.ts`):
 *
 *   line 1  {"type":"keybrake.audit.segment","version":1,"first_seq":F,"last_seq":L,
 *            "prev_hash":…,"head":…,"created_at":…,"public_keys":[{"key_id":…,"pem":…}]}
 *   then    {"type":"record","seq":…,"prev_hash":…,"hash":…,"record":{…}}  × (L - F + 1)
 *   then    {"type":"checkpoint","records":…,"head":…,"at":…,"key_id":…,"signature":…}  × M
 *
 * The last checkpoint covers `L` exactly, so a segment on its own proves its last record existed
 * with that head. Decoding checks the format only: whether the records chain and the signatures
 * verify is the verifier's to say (`archive/verify*.ts`), with the first bad seq.
 */
export const SEGMENT_TYPE = 'keybrake.audit.segment';

/** Where segments live under a sink's prefix. */
export const SEGMENT_DIR = 'segments';

const SEQ_DIGITS = 12;
const NAME_PATTERN = /^segments\/(\d{12})-(\d{12})\.jsonl\.gz$/;

/** A public key that signed checkpoints of the segment. */
export interface SegmentPublicKey {
  readonly key_id: string;
  readonly pem: string;
}

/** Line 1 of a segment. */
export interface SegmentHeader {
  readonly type: typeof SEGMENT_TYPE;
  readonly version: 1;
  readonly first_seq: number;
  readonly last_seq: number;
  /** Hash of record `first_seq - 1`, or 64 zeros for the first segment. */
  readonly prev_hash: string;
  /** Hash of record `last_seq`. */
  readonly head: string;
  readonly created_at: string;
  readonly public_keys: readonly SegmentPublicKey[];
}

/** What a segment is made of (see {@link encodeSegment}). */
export interface SegmentInput {
  /** The records `first..last`, contiguous, oldest first, as the store holds them. */
  readonly entries: readonly AuditEntry[];
  /** Stored checkpoints with `first <= records <= last`; the newest must cover `last` exactly. */
  readonly checkpoints: readonly AuditCheckpoint[];
  readonly publicKeys: readonly SegmentPublicKey[];
  /**
   * ISO time written in the header.
   * @default the `at` of the checkpoint covering `last`, so the bytes are a function of the records
   */
  readonly createdAt?: string;
}

/** An encoded segment, ready for `ArchiveSink.put`. */
export interface EncodedSegment {
  readonly name: string;
  readonly body: Buffer;
  /** Lower-case hex SHA-256 of `body`. */
  readonly sha256: string;
  readonly header: SegmentHeader;
}

/** A decoded segment: its header, its records (`AuditEntry`, record text canonical) and checkpoints. */
export interface DecodedSegment {
  readonly header: SegmentHeader;
  readonly entries: readonly AuditEntry[];
  readonly checkpoints: readonly AuditCheckpoint[];
}

/** What is wrong with a segment that cannot be read as one. */
export type SegmentFormatProblem =
  | 'not_gzip'
  | 'empty'
  | 'not_json'
  | 'bad_header'
  | 'bad_record_line'
  | 'bad_checkpoint_line'
  | 'unexpected_line'
  | 'bad_name'
  | 'bad_input';

/** A segment (or the input of one, or a name) that is not what the format says. */
export class SegmentFormatError extends Error {
  override readonly name = 'SegmentFormatError';
  constructor(
    readonly problem: SegmentFormatProblem,
    message: string,
    /** The 1-based line of the decompressed text, where one is at fault. */
    readonly line?: number,
  ) {
    super(line === undefined ? message : `line ${line}: ${message}`);
  }
}

/** `segments/<first>-<last>.jsonl.gz`, both seqs zero-padded to 12 digits. */
export function segmentName(firstSeq: number, lastSeq: number): string {
  if (!Number.isSafeInteger(firstSeq) || !Number.isSafeInteger(lastSeq) || firstSeq < 1 || lastSeq < firstSeq) {
    throw new SegmentFormatError('bad_name', `no segment covers ${firstSeq}..${lastSeq}`);
  }
  if (String(lastSeq).length > SEQ_DIGITS)
    throw new SegmentFormatError('bad_name', `seq ${lastSeq} has over 12 digits`);
  const pad = (seq: number): string => String(seq).padStart(SEQ_DIGITS, '0');
  return `${SEGMENT_DIR}/${pad(firstSeq)}-${pad(lastSeq)}.jsonl.gz`;
}

/** The range a segment name covers, or `undefined` for a name that is not a segment's. */
export function parseSegmentName(name: string): { firstSeq: number; lastSeq: number } | undefined {
  const match = NAME_PATTERN.exec(name);
  if (!match) return undefined;
  const firstSeq = Number(match[1]);
  const lastSeq = Number(match[2]);
  return firstSeq >= 1 && lastSeq >= firstSeq ? { firstSeq, lastSeq } : undefined;
}

/** Lower-case hex SHA-256. */
export function sha256Hex(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/**
 * Encodes records `first..last` with their checkpoints. Throws `SegmentFormatError('bad_input')`
 * when the records are not contiguous or no checkpoint covers the last one: the archiver cuts
 * segments only at a checkpointed seq.
 */
export function encodeSegment(input: SegmentInput): EncodedSegment {
  const { lines, header, name } = segmentLines(input);
  // Node's gzip writes no time and a fixed OS byte: the same lines always give the same bytes.
  const body = gzipSync(Buffer.from(lines, 'utf8'));
  return { name, body, sha256: sha256Hex(body), header };
}

const gzipAsync = promisify(gzip);

/**
 * {@link encodeSegment}, compressed on libuv's thread pool rather than the event loop (issue 23: a
 * 10,000-record segment gzipped in line held the proxy's calls for most of a second on a busy
 * machine). The same bytes as `encodeSegment`.
 */
export async function encodeSegmentAsync(input: SegmentInput): Promise<EncodedSegment> {
  const { lines, header, name } = segmentLines(input);
  const body = await gzipAsync(Buffer.from(lines, 'utf8'));
  return { name, body, sha256: sha256Hex(body), header };
}

function segmentLines(input: SegmentInput): { lines: string; header: SegmentHeader; name: string } {
  const { entries } = input;
  const first = entries[0];
  const last = entries[entries.length - 1];
  if (!first || !last) throw new SegmentFormatError('bad_input', 'a segment holds at least one record');
  entries.forEach((entry, i) => {
    if (entry.seq !== first.seq + i)
      throw new SegmentFormatError('bad_input', `records are not contiguous at seq ${entry.seq}`);
  });
  const checkpoints = [...input.checkpoints]
    .filter((checkpoint) => checkpoint.records >= first.seq && checkpoint.records <= last.seq)
    .sort((a, b) => a.records - b.records);
  const covering = checkpoints[checkpoints.length - 1];
  if (!covering || covering.records !== last.seq || covering.head !== last.hash) {
    throw new SegmentFormatError('bad_input', `no checkpoint covers seq ${last.seq} with its hash`);
  }
  const header: SegmentHeader = {
    type: SEGMENT_TYPE,
    version: 1,
    first_seq: first.seq,
    last_seq: last.seq,
    prev_hash: first.prevHash,
    head: last.hash,
    created_at: input.createdAt ?? covering.at,
    public_keys: input.publicKeys.map((key) => ({ key_id: key.key_id, pem: key.pem })),
  };
  const lines: string[] = [JSON.stringify(header)];
  for (const entry of entries) lines.push(JSON.stringify(exportRecordLine(entry)));
  for (const checkpoint of checkpoints) {
    lines.push(
      JSON.stringify({
        type: 'checkpoint',
        records: checkpoint.records,
        head: checkpoint.head,
        at: checkpoint.at,
        key_id: checkpoint.key_id,
        signature: checkpoint.signature,
      }),
    );
  }
  return { lines: `${lines.join('\n')}\n`, header, name: segmentName(first.seq, last.seq) };
}

function parseObject(text: string, line: number): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new SegmentFormatError('not_json', 'not JSON', line);
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) {
    throw new SegmentFormatError('not_json', 'not a JSON object', line);
  }
  return value as Record<string, unknown>;
}

const isSeq = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 1;
const isHash = (value: unknown): value is string => typeof value === 'string' && /^[0-9a-f]{64}$/.test(value);

function toHeader(value: Record<string, unknown>): SegmentHeader {
  const keys = value.public_keys;
  const wellFormed =
    value.type === SEGMENT_TYPE &&
    value.version === 1 &&
    isSeq(value.first_seq) &&
    isSeq(value.last_seq) &&
    value.last_seq >= value.first_seq &&
    isHash(value.prev_hash) &&
    isHash(value.head) &&
    typeof value.created_at === 'string' &&
    Array.isArray(keys) &&
    keys.every(
      (key: unknown) =>
        !!key &&
        typeof (key as SegmentPublicKey).key_id === 'string' &&
        typeof (key as SegmentPublicKey).pem === 'string',
    );
  if (!wellFormed) throw new SegmentFormatError('bad_header', `not a ${SEGMENT_TYPE} version 1 header`, 1);
  return {
    type: SEGMENT_TYPE,
    version: 1,
    first_seq: value.first_seq as number,
    last_seq: value.last_seq as number,
    prev_hash: value.prev_hash as string,
    head: value.head as string,
    created_at: value.created_at as string,
    public_keys: (keys as SegmentPublicKey[]).map((key) => ({ key_id: key.key_id, pem: key.pem })),
  };
}

/**
 * Decodes a segment's bytes. Every way the bytes fail to be a segment is a `SegmentFormatError`
 * naming the problem (and the line); records are returned as they are, in file order, for the
 * verifier to check against each other and the checkpoints.
 */
export function decodeSegment(body: Buffer): DecodedSegment {
  let text: string;
  try {
    text = gunzipSync(body).toString('utf8');
  } catch {
    throw new SegmentFormatError('not_gzip', 'the segment is not gzip data');
  }
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines.length === 0) throw new SegmentFormatError('empty', 'the segment has no header');
  const header = toHeader(parseObject(lines[0] as string, 1));
  const entries: AuditEntry[] = [];
  const checkpoints: AuditCheckpoint[] = [];
  for (let i = 1; i < lines.length; i += 1) {
    const lineNumber = i + 1;
    const value = parseObject(lines[i] as string, lineNumber);
    if (value.type === 'record') {
      if (checkpoints.length > 0)
        throw new SegmentFormatError('unexpected_line', 'a record after the checkpoints', lineNumber);
      const record = value.record;
      const wellFormed =
        isSeq(value.seq) &&
        typeof value.prev_hash === 'string' &&
        typeof value.hash === 'string' &&
        ((!!record && typeof record === 'object' && !Array.isArray(record)) || typeof record === 'string');
      if (!wellFormed) throw new SegmentFormatError('bad_record_line', 'not a record line', lineNumber);
      entries.push({
        seq: value.seq as number,
        // The stored text: canonical JSON of the record (a record stored unreadable is kept as its text).
        record: typeof record === 'string' ? record : canonicalJson(record),
        prevHash: value.prev_hash as string,
        hash: value.hash as string,
      });
    } else if (value.type === 'checkpoint') {
      const wellFormed =
        isSeq(value.records) &&
        typeof value.head === 'string' &&
        typeof value.at === 'string' &&
        typeof value.key_id === 'string' &&
        typeof value.signature === 'string';
      if (!wellFormed) throw new SegmentFormatError('bad_checkpoint_line', 'not a checkpoint line', lineNumber);
      checkpoints.push({
        records: value.records as number,
        head: value.head as string,
        at: value.at as string,
        key_id: value.key_id as string,
        signature: value.signature as string,
      });
    } else {
      throw new SegmentFormatError('unexpected_line', 'expected a record or a checkpoint line', lineNumber);
    }
  }
  return { header, entries, checkpoints };
}
