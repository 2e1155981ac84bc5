/**
 * The Redis store's part of the audit archive (issue 23): how far the chain is archived, the
 * archiver's lease, and the trim of archived records (the chain's entries and the families'
 * lists). Its keys share the chain's `{audit}` hash tag.
 */
import type { Cluster, Redis } from 'ioredis';
import { GENESIS_HASH } from '../../audit/chain.js';
import type { ArchiveLeaseInput, ArchiveState, ArchivedSegmentInput } from '../store.js';
import { ARCHIVE_LEASE_LUA, ARCHIVE_READ_LUA, ARCHIVE_RECORD_LUA, ARCHIVE_TRIM_LUA } from './lua/archive.js';

/** The archive state: through, head, segments, trimmed (the chain's entries removed from its start). */
export const ARCHIVE_STATE = '{audit}:archive';
/** The archiver lease: the holder's id, with a TTL. */
export const ARCHIVE_LEASE = '{audit}:archive-lease';

interface ArchiveCommands {
  kbArchiveLease(...args: (string | number)[]): Promise<number>;
  kbArchiveRead(...args: (string | number)[]): Promise<string[]>;
  kbArchiveTrim(...args: (string | number)[]): Promise<number>;
  kbArchiveRecord(...args: (string | number)[]): Promise<number>;
  kbReleaseLock(...args: (string | number)[]): Promise<number>;
}

type ArchiveClient = (Redis | Cluster) & ArchiveCommands;

/** The Redis store's keys and lookups the archive needs (see `redis-store.ts`). */
export interface RedisArchiveKeys {
  readonly chain: string;
  readonly rids: string;
  readonly head: string;
  readonly sealLock: string;
  /** A family's (shard's) audit list and the list of its records' seqs. */
  readonly auditList: (shard: string) => string;
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

  constructor(
    redis: Redis | Cluster,
    private readonly keys: RedisArchiveKeys,
  ) {
    redis.defineCommand('kbArchiveLease', { numberOfKeys: 1, lua: ARCHIVE_LEASE_LUA });
    redis.defineCommand('kbArchiveRecord', { numberOfKeys: 3, lua: ARCHIVE_RECORD_LUA });
    redis.defineCommand('kbArchiveRead', { numberOfKeys: 2, lua: ARCHIVE_READ_LUA });
    redis.defineCommand('kbArchiveTrim', { lua: ARCHIVE_TRIM_LUA });
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
   * Removes up to `limit` archived records: the chain's first entries and, on one Redis, the same
   * records in their families' lists, in one script fenced by the lease and the trim position.
   */
  async trim(holder: string, limit: number): Promise<number> {
    const [through, trimmed] = (await this.redis.hmget(ARCHIVE_STATE, 'through', 'trimmed')).map((v) =>
      Number(v ?? 0),
    ) as [number, number];
    const headSeq = Number((await this.redis.hget(this.keys.head, 'seq')) ?? 0);
    const target = Math.min(through, headSeq - 1, trimmed + limit);
    if (target <= trimmed) return 0;
    const raws = await this.redis.lrange(this.keys.chain, 0, target - trimmed - 1);
    if (raws.length !== target - trimmed) return 0;
    const entries = raws.map((raw) => JSON.parse(raw) as ChainEntryJson);
    const keys: string[] = [
      ARCHIVE_LEASE,
      ARCHIVE_STATE,
      this.keys.chain,
      this.keys.rids,
      this.keys.head,
      this.keys.sealLock,
    ];
    const counts: number[] = [];
    if (!this.keys.cluster) {
      const shards = new Set<string>();
      for (const entry of entries) {
        const keyId = (JSON.parse(entry.record) as { key_id: string | null }).key_id;
        shards.add(await this.keys.shardOf(keyId));
      }
      for (const shard of shards) {
        // The shard's first records whose seq is archived: its seqs list is in chain order.
        const seqs = (await this.redis.lrange(this.keys.sealedSeqs(shard), 0, entries.length - 1)).map(Number);
        let k = 0;
        while (k < seqs.length && (seqs[k] as number) <= target) k += 1;
        keys.push(this.keys.auditList(shard), this.keys.sealedSeqs(shard));
        counts.push(k);
      }
    }
    const args = [
      keys.length,
      ...keys,
      holder,
      trimmed,
      target,
      counts.length,
      ...counts,
      this.keys.cluster ? '0' : '1',
      ...(this.keys.cluster ? [] : entries.map((entry) => entry.rid)),
    ];
    for (let attempt = 0; ; attempt += 1) {
      const removed = await this.redis.kbArchiveTrim(...args);
      // A seal holds its lock for a few commands: wait for it rather than move its lists under it.
      if (removed === -4 && attempt < 200) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        continue;
      }
      return removed > 0 ? removed : 0;
    }
  }
}
