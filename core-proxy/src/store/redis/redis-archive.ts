/**
 * The Redis store's part of the audit archive (issue 23): how far the chain is archived, the
 * archiver's lease, and the trim of archived records (the chain's entries and the families'
 * lists). Its keys share the chain's `{audit}` hash tag.
 */
import type { Cluster, Redis } from 'ioredis';
import { GENESIS_HASH } from '../../audit/chain.js';
import type { ArchiveLeaseInput, ArchiveState, ArchivedSegmentInput } from '../store.js';
import { ARCHIVE_LEASE_LUA, ARCHIVE_RECORD_LUA } from './lua/archive.js';

/** The archive state: through, head, segments, trimmed (the chain's entries removed from its start). */
export const ARCHIVE_STATE = '{audit}:archive';
/** The archiver lease: the holder's id, with a TTL. */
export const ARCHIVE_LEASE = '{audit}:archive-lease';

interface ArchiveCommands {
  kbArchiveLease(...args: (string | number)[]): Promise<number>;
  kbArchiveRecord(...args: (string | number)[]): Promise<number>;
  kbReleaseLock(...args: (string | number)[]): Promise<number>;
}

type ArchiveClient = (Redis | Cluster) & ArchiveCommands;

/** The archive's state, lease and trim on Redis. */
export class RedisArchive {
  private readonly redis: ArchiveClient;

  constructor(
    redis: Redis | Cluster,
    private readonly chainKey: string,
  ) {
    redis.defineCommand('kbArchiveLease', { numberOfKeys: 1, lua: ARCHIVE_LEASE_LUA });
    redis.defineCommand('kbArchiveRecord', { numberOfKeys: 3, lua: ARCHIVE_RECORD_LUA });
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
      this.chainKey,
      input.holder,
      input.firstSeq,
      input.lastSeq,
      input.prevHash,
      input.head,
    );
    return recorded === 1;
  }
}
