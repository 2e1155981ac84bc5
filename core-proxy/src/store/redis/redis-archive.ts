/**
 * The Redis store's part of the audit archive (issue 23): how far the chain is archived, the
 * archiver's lease, and the trim of archived records (the chain's entries and the families'
 * lists). Its keys share the chain's `{audit}` hash tag.
 */
import type { Cluster, Redis } from 'ioredis';
import { GENESIS_HASH } from '../../audit/chain.js';
import type { ArchiveLeaseInput, ArchiveState, ArchivedSegmentInput } from '../store.js';
import {
  ARCHIVE_LEASE_LUA,
  ARCHIVE_READ_LUA,
  ARCHIVE_RECORD_LUA,
  ARCHIVE_TRIM_FAMILY_DONE_LUA,
  ARCHIVE_TRIM_FAMILY_LUA,
  ARCHIVE_TRIM_LUA,
} from './lua/archive.js';

/** The archive state: through, head, segments, trimmed (the chain's entries removed from its start). */
export const ARCHIVE_STATE = '{audit}:archive';
/** The archiver lease: the holder's id, with a TTL. */
export const ARCHIVE_LEASE = '{audit}:archive-lease';
/** Redis Cluster: shards whose family list still holds records trimmed from the chain. */
export const TRIM_FAMILIES = '{audit}:trim-families';
/** Shards' records the keyId -> shard cache of the trim keeps at most. */
const SHARD_CACHE_LIMIT = 10_000;

interface ArchiveCommands {
  kbArchiveLease(...args: (string | number)[]): Promise<number>;
  kbArchiveRead(...args: (string | number)[]): Promise<string[]>;
  kbArchiveTrim(...args: (string | number)[]): Promise<number>;
  kbArchiveTrimFamily(...args: (string | number)[]): Promise<number>;
  kbArchiveTrimFamilyDone(...args: (string | number)[]): Promise<number>;
  kbArchiveRecord(...args: (string | number)[]): Promise<number>;
  kbReleaseLock(...args: (string | number)[]): Promise<number>;
}

type ArchiveClient = (Redis | Cluster) & ArchiveCommands;

/** The Redis store's keys and lookups the archive needs (see `redis-store.ts`). */
export interface RedisArchiveKeys {
  readonly chain: string;
  readonly rids: string;
  readonly head: string;
  /** Shard -> entries trimmed from the head of its seqs list. */
  readonly sealedTrimmed: string;
  /** A family's (shard's) audit list, the count trimmed from its head, and the list of its records' seqs. */
  readonly auditList: (shard: string) => string;
  readonly auditTrimmed: (shard: string) => string;
  readonly sealedSeqs: (shard: string) => string;
  /** The shard a key's records go to (its family's root, or the no-key shard). */
  readonly shardOf: (keyId: string | null) => Promise<string>;
  /** Redis Cluster: a script cannot reach the families' lists from the chain's slot. */
  readonly cluster: boolean;
}

/** A chain entry as the sealer writes it. */
interface ChainEntryJson {
  readonly seq: number;
  readonly rid: string;
  readonly record: string;
}

/** The archive's state, lease and trim on Redis. */
export class RedisArchive {
  private readonly redis: ArchiveClient;
  /** keyId -> shard (a key's family root never changes). */
  private readonly shards = new Map<string | null, string>();

  constructor(
    redis: Redis | Cluster,
    private readonly keys: RedisArchiveKeys,
  ) {
    redis.defineCommand('kbArchiveLease', { numberOfKeys: 1, lua: ARCHIVE_LEASE_LUA });
    redis.defineCommand('kbArchiveRecord', { numberOfKeys: 3, lua: ARCHIVE_RECORD_LUA });
    redis.defineCommand('kbArchiveRead', { numberOfKeys: 2, lua: ARCHIVE_READ_LUA });
    redis.defineCommand('kbArchiveTrim', { lua: ARCHIVE_TRIM_LUA });
    redis.defineCommand('kbArchiveTrimFamily', { numberOfKeys: 2, lua: ARCHIVE_TRIM_FAMILY_LUA });
    redis.defineCommand('kbArchiveTrimFamilyDone', { numberOfKeys: 2, lua: ARCHIVE_TRIM_FAMILY_DONE_LUA });
    this.redis = redis as ArchiveClient;
  }

  async archiveState(): Promise<ArchiveState> {
    const [through, head, segments, trimmed] = await this.redis.hmget(
      ARCHIVE_STATE,
      'through',
      'head',
      'segments',
      'trimmed',
    );
    return {
      archivedThrough: Number(through ?? 0),
      archivedHead: head || GENESIS_HASH,
      segments: Number(segments ?? 0),
      trimmedThrough: Number(trimmed ?? 0),
    };
  }

  async acquireLease(input: ArchiveLeaseInput): Promise<boolean> {
    return (await this.redis.kbArchiveLease(ARCHIVE_LEASE, input.holder, Math.max(1, Math.round(input.ttlMs)))) === 1;
  }

  async releaseLease(holder: string): Promise<void> {
    await this.redis.kbReleaseLock(ARCHIVE_LEASE, holder);
  }

  async recordSegment(input: ArchivedSegmentInput): Promise<boolean> {
    const recorded = await this.redis.kbArchiveRecord(
      ARCHIVE_LEASE,
      ARCHIVE_STATE,
      this.keys.chain,
      input.holder,
      input.firstSeq,
      input.lastSeq,
      input.prevHash,
      input.head,
    );
    return recorded === 1;
  }

  /** Chain entries after `afterSeq` (raw, as stored), wherever the trim has got to. */
  readChain(afterSeq: number, limit: number): Promise<string[]> {
    return this.redis.kbArchiveRead(this.keys.chain, ARCHIVE_STATE, Math.max(0, afterSeq), limit);
  }

  /**
   * Removes up to `limit` archived records: the chain's first entries, their record ids, their
   * seqs in their shards' seqs lists and, on one Redis, their entries in their families' lists, in
   * one script fenced by the lease and the trim position. On Redis Cluster the families' lists are
   * trimmed after, each in its own slot, up to the count the script recorded (see
   * {@link trimFamilies}). No sealer lock: positions are counted from the first record ever, so a
   * sealer appending meanwhile is not disturbed (issue 23).
   */
  async trim(holder: string, limit: number): Promise<number> {
    if (this.keys.cluster) await this.trimFamilies();
    // One read of the state, the head and the chain's first entries, all in the `{audit}` slot.
    const replies = await this.redis
      .multi()
      .hmget(ARCHIVE_STATE, 'through', 'trimmed')
      .hget(this.keys.head, 'seq')
      .lrange(this.keys.chain, 0, Math.max(0, limit - 1))
      .exec();
    const [state, headSeqRaw, chainHead] = (replies ?? []).map(([error, value]) => {
      if (error) throw error;
      return value;
    }) as [(string | null)[], string | null, string[]];
    const through = Number(state[0] ?? 0);
    const trimmed = Number(state[1] ?? 0);
    const headSeq = Number(headSeqRaw ?? 0);
    const target = Math.min(through, headSeq - 1, trimmed + limit);
    if (target <= trimmed) return 0;
    const raws = chainHead.slice(0, target - trimmed);
    if (raws.length !== target - trimmed) return 0;
    const entries = raws.map((raw) => JSON.parse(raw) as ChainEntryJson);
    if (entries[0]?.seq !== trimmed + 1) return 0;
    // Each shard's records among those that go: the most of its seqs list's head that may go.
    const perShard = new Map<string, number>();
    for (const entry of entries) {
      const shard = await this.shardOfRecord(entry.record);
      perShard.set(shard, (perShard.get(shard) ?? 0) + 1);
    }
    const single = !this.keys.cluster;
    const keys: string[] = [
      ARCHIVE_LEASE,
      ARCHIVE_STATE,
      this.keys.chain,
      this.keys.rids,
      this.keys.head,
      this.keys.sealedTrimmed,
      TRIM_FAMILIES,
    ];
    const shardArgs: (string | number)[] = [];
    for (const [shard, most] of perShard) {
      keys.push(this.keys.sealedSeqs(shard));
      if (single) keys.push(this.keys.auditList(shard), this.keys.auditTrimmed(shard));
      shardArgs.push(shard, most);
    }
    const removed = await this.redis.kbArchiveTrim(
      keys.length,
      ...keys,
      holder,
      trimmed,
      target,
      single ? '1' : '0',
      perShard.size,
      ...shardArgs,
      ...entries.map((entry) => entry.rid),
    );
    if (removed > 0 && this.keys.cluster) await this.trimFamilies();
    return removed > 0 ? removed : 0;
  }

  /**
   * Redis Cluster: trims each family list with records trimmed from the chain, in its own slot,
   * up to the count recorded by the chain's trim. Idempotent; a shard is forgotten only once its
   * list caught up with a count that has not moved since.
   */
  async trimFamilies(): Promise<void> {
    const shards = await this.redis.smembers(TRIM_FAMILIES);
    for (const shard of shards) {
      const want = Number((await this.redis.hget(this.keys.sealedTrimmed, shard)) ?? 0);
      await this.redis.kbArchiveTrimFamily(this.keys.auditList(shard), this.keys.auditTrimmed(shard), want);
      await this.redis.kbArchiveTrimFamilyDone(TRIM_FAMILIES, this.keys.sealedTrimmed, shard, want);
    }
  }

  /** The shard a chain entry's record belongs to, its key's family read once per key. */
  private async shardOfRecord(record: string): Promise<string> {
    const keyId = (JSON.parse(record) as { key_id?: string | null }).key_id ?? null;
    const cached = this.shards.get(keyId);
    if (cached !== undefined) return cached;
    const shard = await this.keys.shardOf(keyId);
    if (this.shards.size >= SHARD_CACHE_LIMIT) this.shards.clear();
    this.shards.set(keyId, shard);
    return shard;
  }
}
