/**
 * The Redis store's part of the console's API (issue 22): the key list's sorted-set indexes and
 * digest (see `key-listing.ts`) and the key change log the live feed reads. Everything lives in
 * the one slot `{list}` (scripts and MULTI run on Redis Cluster too).
 *
 * What each costs a proxied call: nothing. Reserve and settle scripts are unchanged; `newest` is
 * written once when a key is issued, `most_spent` and `closest_to_cap` by the digest, which reads
 * the sealed audit chain when a page is asked for. The change log is a capped stream written after
 * an issue, revoke or taint succeeded.
 *
 * Issue 24: on Redis Cluster the family's script cannot also write `{list}` (another slot), so a
 * process that died (or a Redis error) between the two left a live key out of the list, and its
 * change out of the feed. The family's script now also marks each change `<change> <key id>` in the
 * family's own slot (`{vk:<root>}:unlisted`, a sorted set scored by the change's time), atomic with
 * the change; the caller removes the mark once it has listed the change, and a backstop on every
 * replica ({@link RedisListing.relistUnlisted}) lists whatever is still marked after a grace period.
 * Both go through `LIST_CHANGES_LUA`, which writes each change once: the feed never gets one twice.
 * One Redis takes the same path (one mechanism, tested on both).
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
import { APPLY_DIGEST_LUA, LIST_CHANGES_LUA, SCAN_INDEX_LUA } from './lua/listing.js';

/** The key list's indexes (exported for the purge of expired families, `redis-expiry.ts`). */
export const INDEX: Record<KeySort, string> = {
  newest: '{list}:newest',
  most_spent: '{list}:spent',
  closest_to_cap: '{list}:headroom',
};
export const STATS = '{list}:stats';
const DIGEST = '{list}:digest';
const CHANGES = '{list}:changes';
/** Issue 24: `revoked <id>` / `tainted <id>` -> at, for each such change in the change log once. */
export const FED = '{list}:fed';
/** Entries of the change log kept (approximately: `MAXLEN ~`). */
const CHANGES_KEPT = 100_000;
/** Issue 24: a family's changes not listed yet, `<change> <key id>` scored by the change's time. */
export const unlistedKey = (root: string): string => `{vk:${root}}:unlisted`;
/** How long a mark may be there before the backstop lists it: its own caller is normally done. */
export const RELIST_GRACE_MS = 10_000;
/** How often each replica runs the backstop (and once {@link RELIST_GRACE_MS} after it starts). */
export const DEFAULT_RELIST_MS = 30_000;
/** Families whose marks are looked for per round trip of the backstop. */
const RELIST_CHUNK = 500;

type ListedChange = Extract<KeyChangeKind, 'issued' | 'revoked' | 'tainted'>;

/** What the backstop needs of the store. */
export interface ListingBackstop {
  /** Every family root (the store's `shards`, written before a root key's script). */
  readonly families: () => Promise<readonly string[]>;
  /**
   * The key as its family holds it, with its lookups (`h:<hash>`, `root:<id>`) written again, as
   * its own caller would have; undefined when the family no longer holds it.
   */
  readonly restore: (root: string, keyId: string) => Promise<VaultKeyRecord | undefined>;
  /** The connection the backstop's reads use (the store's background one). */
  readonly reads: Redis | Cluster;
}

interface ListingCommands {
  kbScanIndex(key: string, ...args: (string | number)[]): Promise<string[]>;
  kbApplyDigest(...args: (string | number)[]): Promise<number>;
  kbListChanges(...args: (string | number)[]): Promise<number>;
}

type ListingClient = (Redis | Cluster) & ListingCommands;

/** The Redis store's listing indexes, digest and change log. */
export class RedisListing implements KeyListingIndex {
  private readonly redis: ListingClient;

  constructor(
    redis: Redis | Cluster,
    private readonly backstop: ListingBackstop,
  ) {
    redis.defineCommand('kbScanIndex', { numberOfKeys: 1, lua: SCAN_INDEX_LUA });
    redis.defineCommand('kbApplyDigest', { numberOfKeys: 4, lua: APPLY_DIGEST_LUA });
    redis.defineCommand('kbListChanges', { numberOfKeys: 5, lua: LIST_CHANGES_LUA });
    this.redis = redis as ListingClient;
  }

  /** After the key's family script: its index entries and its `issued` change, then its mark goes. */
  async keyCreated(root: string, record: VaultKeyRecord): Promise<void> {
    await this.list('issued', issuedArgs(record));
    await this.redis.zrem(unlistedKey(root), `issued ${record.keyId}`);
  }

  /** After a subtree mark succeeded: one change per key it changed, then their marks go. */
  async subtreeChanged(root: string, keyIds: readonly string[], change: ListedChange, at: number): Promise<void> {
    if (keyIds.length === 0) return;
    await this.list(
      change,
      keyIds.flatMap((keyId) => [keyId, at]),
    );
    await this.redis.zrem(unlistedKey(root), ...keyIds.map((keyId) => `${change} ${keyId}`));
  }

  /**
   * The backstop (issue 24): lists every change still marked in its family `RELIST_GRACE_MS` after
   * it was made (its caller died or failed in between), then removes the marks. The families are
   * the store's `shards`, one `EXISTS` each, in chunks, as the alerts' backstop does (issue 26).
   * Safe on every replica at once: a change is written once whoever lists it.
   * @returns how many changes it wrote (0 when every caller had listed its own).
   */
  async relistUnlisted(now: number): Promise<number> {
    const reads = this.backstop.reads;
    const roots = await this.backstop.families();
    let written = 0;
    for (let i = 0; i < roots.length; i += RELIST_CHUNK) {
      const chunk = roots.slice(i, i + RELIST_CHUNK);
      const found = await Promise.all(chunk.map((root) => reads.exists(unlistedKey(root))));
      for (const root of chunk.filter((_, j) => found[j] === 1)) {
        written += await this.relistFamily(root, now);
      }
    }
    return written;
  }

  private async relistFamily(root: string, now: number): Promise<number> {
    const flat = await this.backstop.reads.zrangebyscore(
      unlistedKey(root),
      '-inf',
      now - RELIST_GRACE_MS,
      'WITHSCORES',
    );
    const marks: { mark: string; change: ListedChange; keyId: string; at: number }[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const mark = flat[i] as string;
      const [change, keyId] = mark.split(' ') as [ListedChange, string];
      marks.push({ mark, change, keyId, at: Number(flat[i + 1]) });
    }
    let written = 0;
    // Issued first, so a key is in the list before its revocation is in the feed.
    for (const change of ['issued', 'revoked', 'tainted'] as const) {
      const mine = marks.filter((mark) => mark.change === change);
      if (mine.length === 0) continue;
      if (change === 'issued') {
        for (const mark of mine) {
          const record = await this.backstop.restore(root, mark.keyId);
          if (record) written += await this.list('issued', issuedArgs(record));
        }
      } else {
        written += await this.list(
          change,
          mine.flatMap((mark) => [mark.keyId, mark.at]),
        );
      }
      await this.redis.zrem(unlistedKey(root), ...mine.map((mark) => mark.mark));
    }
    return written;
  }

  private list(change: ListedChange, args: readonly (string | number)[]): Promise<number> {
    return this.redis.kbListChanges(
      INDEX.newest,
      INDEX.most_spent,
      INDEX.closest_to_cap,
      CHANGES,
      FED,
      change,
      CHANGES_KEPT,
      ...args,
    );
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

/** A new key's arguments of `LIST_CHANGES_LUA`: its id, creation time and first scores. */
function issuedArgs(record: VaultKeyRecord): (string | number)[] {
  const scores = initialScores(record);
  return [record.keyId, record.createdAt, scores.spent, scores.headroom];
}
