/**
 * The Redis store's part of the console's API (issue 22): the key list's sorted-set indexes and
 * digest (see `key-listing.ts`) and the key change log the live feed reads. Everything lives in
 * the one slot `{list}` (scripts and MULTI run on Redis Cluster too).
 *
 * What each costs a proxied call: nothing. Reserve and settle scripts are unchanged; `newest` is
 * written once when a key is issued, `most_spent` and `closest_to_cap` by the digest, which reads
 * the sealed audit chain when a page is asked for. The change log is a capped stream written after
 * an issue, revoke or taint succeeded: on Cluster it cannot share the family's script (another
 * slot), so a process that dies between the two loses that change from the feed, never the change.
 */
import type { Cluster, Redis } from 'ioredis';
import {
  type DigestProgress,
  type DigestUpdate,
  type IndexPosition,
  type KeyCallStats,
  type KeyListingIndex,
  type KeySort,
  descending,
  initialScores,
} from '../key-listing.js';
import type { KeyChange, KeyChangeKind, KeyChangesRead, VaultKeyRecord } from '../store.js';
import { APPLY_DIGEST_LUA, SCAN_INDEX_LUA } from './lua/listing.js';

/** The key list's indexes (exported for the purge of expired families, `redis-expiry.ts`). */
export const INDEX: Record<KeySort, string> = {
  newest: '{list}:newest',
  most_spent: '{list}:spent',
  closest_to_cap: '{list}:headroom',
};
export const STATS = '{list}:stats';
const DIGEST = '{list}:digest';
const CHANGES = '{list}:changes';
/** Entries of the change log kept (approximately: `MAXLEN ~`). */
const CHANGES_KEPT = 100_000;

interface ListingCommands {
  kbScanIndex(key: string, ...args: (string | number)[]): Promise<string[]>;
  kbApplyDigest(...args: (string | number)[]): Promise<number>;
}

type ListingClient = (Redis | Cluster) & ListingCommands;

/** The Redis store's listing indexes, digest and change log. */
export class RedisListing implements KeyListingIndex {
  private readonly redis: ListingClient;

  constructor(redis: Redis | Cluster) {
    redis.defineCommand('kbScanIndex', { numberOfKeys: 1, lua: SCAN_INDEX_LUA });
    redis.defineCommand('kbApplyDigest', { numberOfKeys: 4, lua: APPLY_DIGEST_LUA });
    this.redis = redis as ListingClient;
  }

  /** After the key's family data is written: its index entries and its `issued` change. */
  async keyCreated(record: VaultKeyRecord): Promise<void> {
    const scores = initialScores(record);
    await this.redis
      .multi()
      .zadd(INDEX.newest, record.createdAt, record.keyId)
      .zadd(INDEX.most_spent, scores.spent, record.keyId)
      .zadd(INDEX.closest_to_cap, scores.headroom, record.keyId)
      .xadd(
        CHANGES,
        'MAXLEN',
        '~',
        CHANGES_KEPT,
        '*',
        'key_id',
        record.keyId,
        'change',
        'issued',
        'at',
        record.createdAt,
      )
      .exec();
  }

  /** After a subtree mark succeeded: one change per key it changed. */
  async subtreeChanged(
    keyIds: readonly string[],
    change: Extract<KeyChangeKind, 'revoked' | 'tainted'>,
    at: number,
  ): Promise<void> {
    if (keyIds.length === 0) return;
    let multi = this.redis.multi();
    for (const keyId of keyIds) {
      multi = multi.xadd(CHANGES, 'MAXLEN', '~', CHANGES_KEPT, '*', 'key_id', keyId, 'change', change, 'at', at);
    }
    await multi.exec();
  }

  async scan(sort: KeySort, after: IndexPosition | null, count: number): Promise<IndexPosition[]> {
    const flat = await this.redis.kbScanIndex(
      INDEX[sort],
      descending(sort) ? 'desc' : 'asc',
      after === null ? '' : String(after.score),
      after?.keyId ?? '',
      count,
    );
    const entries: IndexPosition[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) entries.push({ keyId: flat[i] as string, score: Number(flat[i + 1]) });
    return entries;
  }

  async stats(keyIds: readonly string[]): Promise<Map<string, KeyCallStats>> {
    const stats = new Map<string, KeyCallStats>();
    if (keyIds.length === 0) return stats;
    const values = await this.redis.hmget(STATS, ...keyIds.flatMap((id) => [`c:${id}`, `h:${id}`, `r:${id}`]));
    keyIds.forEach((keyId, i) => {
      stats.set(keyId, {
        calls: Number(values[3 * i] ?? 0),
        capHits: Number(values[3 * i + 1] ?? 0),
        refusals: Number(values[3 * i + 2] ?? 0),
      });
    });
    return stats;
  }

  async progress(): Promise<DigestProgress> {
    const [seq, day] = await this.redis.hmget(DIGEST, 'seq', 'day');
    return { seq: Number(seq ?? 0), day: day ?? '' };
  }

  async apply(update: DigestUpdate): Promise<boolean> {
    const counts = [...update.counts].flatMap(([keyId, stats]) => [keyId, stats.calls, stats.capHits, stats.refusals]);
    const scores = update.scores.flatMap((key) => [key.keyId, key.spent, key.headroom]);
    const applied = await this.redis.kbApplyDigest(
      DIGEST,
      STATS,
      INDEX.most_spent,
      INDEX.closest_to_cap,
      String(update.from.seq),
      update.from.day,
      String(update.to.seq),
      update.to.day,
      update.counts.size,
      ...counts,
      ...scores,
    );
    return applied === 1;
  }

  async readKeyChanges(position: string | null, limit: number): Promise<KeyChangesRead> {
    if (position === null) {
      const last = await this.redis.xrevrange(CHANGES, '+', '-', 'COUNT', 1);
      return { changes: [], position: last[0]?.[0] ?? '0-0' };
    }
    if (!/^\d+-\d+$/.test(position)) return { changes: [], position: '0-0' };
    const entries = await this.redis.xrange(CHANGES, `(${position}`, '+', 'COUNT', limit);
    const changes: KeyChange[] = entries.map(([id, fields]) => {
      const value = (name: string): string => fields[fields.indexOf(name) + 1] ?? '';
      return {
        keyId: value('key_id'),
        change: value('change') as KeyChangeKind,
        at: Number(value('at')),
        position: id,
      };
    });
    return { changes, position: entries.at(-1)?.[0] ?? position };
  }
}
