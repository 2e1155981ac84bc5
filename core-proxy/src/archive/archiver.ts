import { randomUUID } from 'node:crypto';
import type { CheckpointSigner } from '../audit/checkpoints.js';
import type { AuditCheckpoint, AuditEntry, AuditHead, ArchiveState, Store } from '../store/store.js';
import { ArchiveSinkError, type ArchiveSink } from './sink.js';
import { SerialRounds } from './serial-rounds.js';
import {
  SegmentFormatError,
  decodeSegment,
  encodeSegmentAsync,
  parseSegmentName,
  segmentName,
  sha256Hex,
} from './segment.js';

/** Options of {@link Archiver}. */
export interface ArchiverOptions {
  readonly store: Store;
  readonly sink: ArchiveSink;
  /** Signs the checkpoint a segment is cut at when the store has none there yet. */
  readonly signer: CheckpointSigner;
  /** The newest records kept live. */
  readonly liveRecords: number;
  /** Records younger than this stay live, ms. */
  readonly liveMs: number;
  /** Time between rounds when there is nothing to archive, ms. */
  readonly intervalMs: number;
  /** Most records per segment. @default 10000 */
  readonly segmentRecords?: number;
  /**
   * Most bytes of record text per segment (a segment ends at `segmentRecords` or here, whichever
   * comes first): bounds a round's memory and time. @default 8 MiB
   */
  readonly segmentBytes?: number;
  /** Live records removed per store write. @default 2000 */
  readonly trimSlice?: number;
  /** How long the lease lasts unless renewed, ms. @default max(30 s, 3 × intervalMs) capped at 5 min */
  readonly leaseTtlMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
  /** Called with each checkpoint the archiver signs (the server logs it, as the checkpointer's). */
  readonly onCheckpoint?: (checkpoint: AuditCheckpoint) => void;
  /** Called with each segment recorded as archived. */
  readonly onSegment?: (segment: {
    name: string;
    firstSeq: number;
    lastSeq: number;
    bytes: number;
    adopted: boolean;
  }) => void;
  /** Called with each failed round: never a credential in it (the sink's errors name the sink only). */
  readonly onError?: (error: ArchiveRoundError) => void;
}

/** Why a round failed, as metrics count it. */
export type ArchiveFailureReason =
  | 'sink_unavailable'
  | 'segment_conflict'
  | 'readback_mismatch'
  | 'lease_lost'
  | 'store_unavailable'
  | 'segment_unreadable';

/** A round that did not finish; the next one starts again from the store's archive state. */
export class ArchiveRoundError extends Error {
  override readonly name = 'ArchiveRoundError';
  constructor(
    readonly reason: ArchiveFailureReason,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What the archiver knows, for `/metrics`. */
export interface ArchiverStatus {
  readonly state: ArchiveState | undefined;
  readonly head: AuditHead | undefined;
  /** Records past the live window not yet archived (as of the last round this replica led). */
  readonly lagRecords: number;
  /** Seconds since the archive was last caught up (0 when it is). */
  readonly lagSeconds: number;
  readonly segmentsWritten: number;
  readonly lastError: { readonly at: number; readonly reason: ArchiveFailureReason } | undefined;
  readonly errors: Readonly<Partial<Record<ArchiveFailureReason, number>>>;
  /** Whether this replica held the lease in its last round. */
  readonly leader: boolean;
}

/** What one round did. */
export type ArchiveRoundOutcome =
  | { readonly kind: 'not_leader' }
  | { readonly kind: 'idle' }
  | {
      readonly kind: 'archived';
      readonly name: string;
      readonly firstSeq: number;
      readonly lastSeq: number;
      readonly adopted: boolean;
    };

const PAGE = 1000;

/**
 * How long the archiver lease lasts unless renewed, by default: three intervals, at least 30 s and
 * at most 5 min. The expiry purger's default too, as it runs under the same lease.
 */
export function defaultArchiveLeaseTtlMs(intervalMs: number): number {
  return Math.min(300_000, Math.max(30_000, 3 * intervalMs));
}

/**
 * The archiver (issue 23). One replica at a time, through a lease in the store, it takes the
 * oldest checkpointed range past `archivedThrough` that is outside the live window, writes it to
 * the sink as a segment, reads it back (`stat`, then `get`: size and SHA-256), records it in the
 * store, and only then trims those records from the live store, a slice per write.
 *
 * Every step survives a kill at any point, with nothing in between to lose: the store says how
 * far the archive reached (`archivedThrough`, moved only by a fenced, check-and-set record), the
 * sink says what is stored, and a segment's bytes are a function of its records. A restarted
 * archiver finds a segment it had put but not recorded (`list`, from `archivedThrough + 1`),
 * checks it against the live records, and records it; one put again gives the same bytes, which
 * the sink accepts. The trim follows the record and never passes it.
 */
export class Archiver {
  readonly holder = randomUUID();
  private readonly segmentRecords: number;
  private readonly segmentBytes: number;
  private readonly trimSlice: number;
  private readonly leaseTtlMs: number;
  private readonly now: () => number;
  private readonly rounds: SerialRounds<ArchiveRoundOutcome>;
  private caughtUpAt: number;
  private status: {
    state: ArchiveState | undefined;
    head: AuditHead | undefined;
    lagRecords: number;
    segmentsWritten: number;
    lastError: ArchiverStatus['lastError'];
    errors: Partial<Record<ArchiveFailureReason, number>>;
    leader: boolean;
  } = {
    state: undefined,
    head: undefined,
    lagRecords: 0,
    segmentsWritten: 0,
    lastError: undefined,
    errors: {},
    leader: false,
  };

  constructor(private readonly options: ArchiverOptions) {
    this.segmentRecords = options.segmentRecords ?? 10_000;
    this.segmentBytes = options.segmentBytes ?? 8 * 1024 * 1024;
    this.trimSlice = options.trimSlice ?? 2000;
    this.leaseTtlMs = options.leaseTtlMs ?? defaultArchiveLeaseTtlMs(options.intervalMs);
    this.now = options.now ?? Date.now;
    this.caughtUpAt = this.now();
    this.rounds = new SerialRounds({
      round: () => this.round(),
      nextDelayMs: (outcome) => (outcome.kind === 'archived' ? 0 : options.intervalMs),
      retryDelayMs: options.intervalMs,
    });
  }

  private get stopped(): boolean {
    return this.rounds.stopped;
  }

  /** Runs rounds: back to back while there is a backlog, else every `intervalMs`. */
  start(): void {
    // The first round waits for the store's connections (a round racing the start-up would fail
    // as `store_unavailable` for nothing); a store still out of reach after one interval is reported.
    this.rounds.start(
      this.options.store.ping().then(
        () => 0,
        () => this.options.intervalMs,
      ),
    );
  }

  /** Stops after the round in flight (or at its next lease check) and gives the lease up. */
  async stop(): Promise<void> {
    await this.rounds.stop();
    if (this.status.leader) await this.options.store.releaseArchiveLease(this.holder).catch(() => undefined);
  }

  /** What `/metrics` shows. */
  snapshot(): ArchiverStatus {
    const behind = this.status.lagRecords > 0;
    return {
      ...this.status,
      lagSeconds: behind ? Math.max(0, (this.now() - this.caughtUpAt) / 1000) : 0,
    };
  }

  /** One round, never overlapping another: for tests and the timer. Failures come back as `ArchiveRoundError`. */
  runOnce(): Promise<ArchiveRoundOutcome> {
    return this.rounds.runOnce();
  }

  private async round(): Promise<ArchiveRoundOutcome> {
    try {
      return await this.archiveNext();
    } catch (error) {
      const failure =
        error instanceof ArchiveRoundError
          ? error
          : error instanceof ArchiveSinkError
            ? new ArchiveRoundError(
                error.reason === 'segment_conflict' ? 'segment_conflict' : 'sink_unavailable',
                error.message,
                { cause: error },
              )
            : new ArchiveRoundError('store_unavailable', `the store failed: ${(error as Error).message}`, {
                cause: error,
              });
      this.status.lastError = { at: this.now(), reason: failure.reason };
      this.status.errors[failure.reason] = (this.status.errors[failure.reason] ?? 0) + 1;
      this.options.onError?.(failure);
      throw failure;
    }
  }

  /** Takes or renews the lease; throws `lease_lost` when another holder has it mid-round. */
  private async holdLease(midRound: boolean): Promise<boolean> {
    const held = await this.options.store.acquireArchiveLease({ holder: this.holder, ttlMs: this.leaseTtlMs });
    this.status.leader = held;
    if (!held && midRound) throw new ArchiveRoundError('lease_lost', 'the archiver lease was lost mid-round');
    return held;
  }

  private async archiveNext(): Promise<ArchiveRoundOutcome> {
    const { store, sink } = this.options;
    if (this.stopped) return { kind: 'idle' };
    if (!(await this.holdLease(false))) {
      // Still the figures of the store for this replica's /metrics.
      this.status.state = await store.archiveState();
      this.status.head = await store.auditHead();
      return { kind: 'not_leader' };
    }
    let state = await store.archiveState();
    // A trim cut short (a kill, a lost lease) is finished first: the record is already there.
    if (state.trimmedThrough < state.archivedThrough) state = await this.trim(state);
    // As chained now: with a backlog, waiting for the sealers would only delay the round (issue 23:
    // 1-7 s under load). Only a round that would find nothing asks the store to chain what it has.
    let head = await store.chainedAuditHead();
    let { entries, behind } = await this.archivable(state, head);
    if (entries.length === 0) {
      head = await store.auditHead();
      ({ entries, behind } = await this.archivable(state, head));
    }
    this.status.head = head;
    this.status.state = state;
    const first = state.archivedThrough + 1;
    const last = entries.length === 0 ? state.archivedThrough : (entries[entries.length - 1] as AuditEntry).seq;
    this.status.lagRecords = Math.max(0, behind);
    if (last < first) {
      this.caughtUpAt = this.now();
      return { kind: 'idle' };
    }

    const adopted = await this.storedSegment(first, state);
    let name: string;
    let lastSeq: number;
    let bytes: number;
    if (adopted) {
      ({ name, lastSeq } = adopted);
      bytes = adopted.bytes;
    } else {
      const segment = await encodeSegmentAsync({
        entries,
        checkpoints: await this.checkpointsFor(first, entries[entries.length - 1] as AuditEntry),
        publicKeys: [{ key_id: this.options.signer.keyId, pem: this.options.signer.publicKeyPem() }],
      });
      await this.holdLease(true);
      await sink.put(segment.name, segment.body, segment.sha256);
      await this.readBack(segment.name, segment.body.length, segment.sha256);
      name = segment.name;
      lastSeq = last;
      bytes = segment.body.length;
    }

    const lastEntry = (await store.readAudit(lastSeq - 1, 1))[0];
    if (lastEntry?.seq !== lastSeq) throw new ArchiveRoundError('store_unavailable', `record ${lastSeq} is not live`);
    await this.holdLease(true);
    const recorded = await store.recordArchivedSegment({
      holder: this.holder,
      firstSeq: first,
      lastSeq,
      prevHash: state.archivedHead,
      head: lastEntry.hash,
    });
    if (!recorded) {
      const now = await store.archiveState();
      if (now.archivedThrough !== lastSeq || now.archivedHead !== lastEntry.hash) {
        throw new ArchiveRoundError(
          'lease_lost',
          `segment ${name} was not recorded: the lease or the archive state moved`,
        );
      }
    }
    this.status.segmentsWritten += 1;
    this.options.onSegment?.({ name, firstSeq: first, lastSeq, bytes, adopted: adopted !== undefined });
    this.status.state = await this.trim(await store.archiveState());
    this.status.lagRecords = Math.max(0, behind - (lastSeq - state.archivedThrough));
    if (this.status.lagRecords === 0) this.caughtUpAt = this.now();
    return { kind: 'archived', name, firstSeq: first, lastSeq, adopted: adopted !== undefined };
  }

  /**
   * The records of the next segment, read once: from `archivedThrough + 1`, outside the live window
   * (beyond the newest `liveRecords`, or older than `liveMs`), never the chain's last record (the
   * next one is chained to it, so it stays live), at most `segmentRecords` records and about
   * `segmentBytes` of record text. `behind`: how many records past the live window are not yet
   * archived (as far as this round read).
   */
  private async archivable(state: ArchiveState, head: AuditHead): Promise<{ entries: AuditEntry[]; behind: number }> {
    const first = state.archivedThrough + 1;
    const chainEnd = head.records - 1;
    const ceiling = Math.min(chainEnd, first + this.segmentRecords - 1);
    if (ceiling < first) return { entries: [], behind: 0 };
    // Past the newest `liveRecords`: archivable whatever their age.
    const byCount = Math.min(chainEnd, head.records - this.options.liveRecords);
    // By age: records are appended in time order (an `at` out of order only ends the run early).
    const cutoff = this.now() - this.options.liveMs;
    const entries: AuditEntry[] = [];
    let bytes = 0;
    let young = false;
    let full = false;
    for (let after = first - 1; after < ceiling && !full && !young;) {
      const page = await this.options.store.readAudit(after, Math.min(PAGE, ceiling - after));
      if (page.length === 0) break;
      for (const entry of page) {
        if (entry.seq !== first + entries.length)
          throw new ArchiveRoundError('store_unavailable', `live record ${first + entries.length} is missing`);
        if (entry.seq > byCount) {
          const at = recordTime(entry);
          if (at === undefined || at >= cutoff) {
            young = true;
            break;
          }
        }
        entries.push(entry);
        bytes += entry.record.length;
        if (bytes >= this.segmentBytes) {
          full = true;
          break;
        }
      }
      after = (page[page.length - 1] as AuditEntry).seq;
    }
    // Cut by size or count, not by age: at least one more record is waiting.
    const more = !young && entries.length > 0 && (full || first + entries.length - 1 < chainEnd) ? 1 : 0;
    return { entries, behind: Math.max(entries.length + more, byCount - state.archivedThrough) };
  }

  /** The live records `first..last`, checked contiguous. */
  private async readLive(first: number, last: number): Promise<AuditEntry[]> {
    const entries: AuditEntry[] = [];
    for (let after = first - 1; after < last;) {
      const page = await this.options.store.readAudit(after, Math.min(PAGE, last - after));
      if (page.length === 0) break;
      entries.push(...page);
      after = (page[page.length - 1] as AuditEntry).seq;
    }
    entries.forEach((entry, i) => {
      if (entry.seq !== first + i)
        throw new ArchiveRoundError('store_unavailable', `live record ${first + i} is missing`);
    });
    if (entries.length !== last - first + 1)
      throw new ArchiveRoundError('store_unavailable', `live records ${first}..${last} are not all there`);
    return entries;
  }

  /**
   * The stored checkpoints of the segment ending at `last`, one of them at `last` exactly: signed
   * and stored first when there is none (a true statement about the past: record `seq` had this
   * hash, as the chain proves). One read of the checkpoints, two when one is added.
   */
  private async checkpointsFor(first: number, last: AuditEntry): Promise<AuditCheckpoint[]> {
    const { store, signer } = this.options;
    let checkpoints = await store.listCheckpoints();
    if (!checkpoints.some((c) => c.records === last.seq && c.head === last.hash)) {
      const signed = signer.sign({ records: last.seq, head: last.hash }, new Date(this.now()).toISOString());
      await store.addCheckpoint(signed);
      // Another replica's checkpoint for the same count may have been kept instead: use the stored one.
      checkpoints = await store.listCheckpoints();
      const stored = checkpoints.find((c) => c.records === last.seq && c.head === last.hash);
      if (!stored) throw new ArchiveRoundError('store_unavailable', `the checkpoint at ${last.seq} was not kept`);
      if (stored.signature === signed.signature) this.options.onCheckpoint?.(signed);
    }
    return checkpoints.filter((c) => c.records >= first && c.records <= last.seq);
  }

  /**
   * A segment starting at `first` already in the sink (put by a round that died before recording
   * it, or by a replica that lost its lease): adopted if it holds exactly the live records.
   */
  private async storedSegment(
    first: number,
    state: ArchiveState,
  ): Promise<{ name: string; lastSeq: number; bytes: number } | undefined> {
    const { sink } = this.options;
    const prefix = segmentName(first, first).slice(0, 'segments/'.length + 12);
    const names = (await sink.list(prefix)).filter((name) => name.startsWith(prefix));
    const name = names[0];
    if (name === undefined) return undefined;
    const range = parseSegmentName(name);
    const body = await sink.get(name);
    if (!range || !body) return undefined;
    let decoded;
    try {
      decoded = decodeSegment(body);
    } catch (error) {
      if (error instanceof SegmentFormatError) {
        throw new ArchiveRoundError(
          'segment_unreadable',
          `${sink.describe()}: ${name} is not a segment (${error.message}); it is left as it is`,
        );
      }
      throw error;
    }
    const live = await this.readLive(first, range.lastSeq);
    const same =
      decoded.header.first_seq === first &&
      decoded.header.last_seq === range.lastSeq &&
      decoded.header.prev_hash === state.archivedHead &&
      decoded.entries.length === live.length &&
      decoded.entries.every((entry, i) => {
        const mine = live[i] as AuditEntry;
        return (
          entry.seq === mine.seq &&
          entry.hash === mine.hash &&
          entry.prevHash === mine.prevHash &&
          entry.record === mine.record
        );
      });
    if (!same) {
      throw new ArchiveRoundError(
        'segment_conflict',
        `${sink.describe()}: ${name} does not hold the live records ${first}..${range.lastSeq}; it is left as it is`,
      );
    }
    await this.readBack(name, body.length, sha256Hex(body));
    return { name, lastSeq: range.lastSeq, bytes: body.length };
  }

  /** Reads a segment back: its size, then its bytes' SHA-256 (and the sink's own, where it keeps one). */
  private async readBack(name: string, size: number, sha256: string): Promise<void> {
    const { sink } = this.options;
    const stat = await sink.stat(name);
    if (!stat || stat.size !== size || (stat.sha256 !== undefined && stat.sha256 !== sha256)) {
      throw new ArchiveRoundError(
        'readback_mismatch',
        `${sink.describe()}: ${name} reads back with another size or hash`,
      );
    }
    const body = await sink.get(name);
    if (!body || body.length !== size || sha256Hex(body) !== sha256) {
      throw new ArchiveRoundError('readback_mismatch', `${sink.describe()}: ${name} reads back with other bytes`);
    }
  }

  /** Trims the live store up to `archivedThrough`, a slice per write, renewing the lease as it goes. */
  private async trim(state: ArchiveState): Promise<ArchiveState> {
    const { store } = this.options;
    let renewedAt = this.now();
    for (;;) {
      if (this.stopped) break;
      if (this.now() - renewedAt > this.leaseTtlMs / 3) {
        await this.holdLease(true);
        renewedAt = this.now();
      }
      const removed = await store.trimArchivedAudit(this.holder, this.trimSlice);
      if (removed === 0) break;
      // Calls queued behind the slice go first.
      await new Promise((resolve) => setImmediate(resolve));
    }
    const after = await store.archiveState();
    if (after.trimmedThrough < Math.min(after.archivedThrough, state.archivedThrough) && !this.stopped) {
      // Nothing removed yet records remain: the lease is gone (the store refuses the trim).
      await this.holdLease(true);
    }
    return after;
  }
}

/** Epoch ms of a record's `at`, or `undefined` when it cannot be read. */
function recordTime(entry: AuditEntry): number | undefined {
  const match = /"at":"([^"]+)"/.exec(entry.record);
  const at = match ? Date.parse(match[1] as string) : Number.NaN;
  return Number.isFinite(at) ? at : undefined;
}
