/**
 * Archive sinks (issue 23): where sealed segments are kept for good. Every sink is write-once:
 * `put` of a name that exists succeeds only with the same bytes, and never overwrites. The
 * archiver removes records from the live store only after `stat` and `get` read the segment back
 * with the size and SHA-256 it put.
 */

/** What a sink says of a stored segment without reading it. */
export interface SegmentStat {
  readonly size: number;
  /** Lower-case hex SHA-256 of the bytes, when the sink keeps one (S3 checksums, the directory sink). */
  readonly sha256?: string;
}

/** Where archive segments are written and read back. */
export interface ArchiveSink {
  /**
   * Stores `body` under `name` (`segments/<first>-<last>.jsonl.gz`, see `segment.ts`). Idempotent:
   * the same name with the same bytes succeeds; other bytes under an existing name throw
   * `ArchiveSinkError('segment_conflict')` and leave the stored segment as it was.
   */
  put(name: string, body: Buffer, sha256: string): Promise<void>;
  /** The segment's bytes, or `undefined` when there is none of that name. */
  get(name: string): Promise<Buffer | undefined>;
  /** The segment's size (and hash where known), or `undefined` when there is none of that name. */
  stat(name: string): Promise<SegmentStat | undefined>;
  /**
   * Every segment name (`segments/…`; other objects are left out), sorted; only those starting
   * with `prefix` when given (the archiver asks for one range's, not the whole archive's).
   */
  list(prefix?: string): Promise<string[]>;
  /** Where the sink writes, with no credential: `dir:/path`, `s3://bucket/prefix`. */
  describe(): string;
  /**
   * Checks at start-up what the configuration promises of the sink (S3: Object Lock when asked
   * for); `sink_misconfigured` stops the start, `sink_unavailable` only delays archiving.
   */
  prepare(): Promise<void>;
  /** Releases what the sink holds open (clients). */
  close(): Promise<void>;
}

/** Why a sink operation failed: a stable label for metrics and logs. */
export type ArchiveSinkFailure =
  /** Other bytes are stored under this segment's name. */
  | 'segment_conflict'
  /** The sink cannot be reached or refused the operation (network, permissions, disk). */
  | 'sink_unavailable'
  /** The configuration names no usable sink. */
  | 'sink_misconfigured';

/** A sink failure. Its message names the sink (`describe()`) and never a credential. */
export class ArchiveSinkError extends Error {
  override readonly name = 'ArchiveSinkError';
  constructor(
    readonly reason: ArchiveSinkFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
