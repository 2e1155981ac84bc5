/**
 * The Redis store's removal of expired key families (issue 23; see `Store.purgeExpired`).
 *
 * Families are found by their root key's expiry in `{expiry}:roots` (root id -> `expires_at`),
 * written when a root key is issued; a store written before it is indexed once, from the key
 * list's `newest` index, by the first purge. Each family goes in three steps, every one safe to
 * repeat after a crash (the family stays in `{expiry}:roots` until the last one):
 * 1. checks outside any script (no reservation in flight, no pending alert, every audit record of
 *    the family archived and trimmed), then the vault key hash lookups (`h:<hash>`) are removed,
 *    so no new call finds the keys;
 * 2. `PURGE_FAMILY_LUA` checks again and removes everything in the family's slot at once: the key
 *    hashes (spend, limit counters), reservations hash, audit list, alerts, day spend hashes;
 * 3. what lives in other slots: `root:<id>`, the key list's indexes, the sealed seqs list, the
 *    shard sets, then the member set and the family's entry in `{expiry}:roots`.
 * If step 2 refuses (a call came in between), the lookups of step 1 are put back.
 *
 * Kept idempotent responses need no purge here: each has a Redis TTL of the store's retention;
 * tracked vendor objects and day spend hashes have theirs too (day hashes are also removed here).
 */
import type { Cluster, Redis } from 'ioredis';
import { type ExpiryPurgeInput, utcDay } from '../store.js';
import { type ExpiryCounts, NO_EXPIRY_COUNTS, addExpiryCounts } from '../expiry-counts.js';
import { PURGE_FAMILY_LUA } from './lua/expiry.js';
import { ARCHIVE_STATE } from './redis-archive.js';

/** Root key id -> its `expires_at` (epoch ms): the families in order of expiry. */
export const EXPIRY_ROOTS = '{expiry}:roots';
/** Set once every root key written before `EXPIRY_ROOTS` existed is in it. */
const EXPIRY_INDEXED = '{expiry}:indexed';
/** Root keys looked at per read of the index. */
const PAGE = 50;
/** Days of spend hashes removed per key: more than their TTL in `redis-store.ts` (9 days). */
const DAY_HASH_DAYS = 10;
const DAY_MS = 86_400_000;

interface ExpiryCommands {
  kbPurgeFamily(...args: (string | number)[]): Promise<number[]>;
}

type ExpiryClient = (Redis | Cluster) & ExpiryCommands;

/** The Redis store's keys the purge needs (see `redis-store.ts`). */
export interface RedisExpiryKeys {
  /** The prefix ioredis adds, which the member set's names carry. */
  readonly prefix: string;
  readonly keyHash: (root: string, id: string) => string;
  readonly reservations: (root: string) => string;
  readonly members: (root: string) => string;
  readonly auditList: (shard: string) => string;
  readonly sealedSeqs: (shard: string) => string;
  /** Shard -> count trimmed from its seqs list (the audit archive's; issue 23 keepup). */
  readonly sealedTrimmed: string;
  readonly alerts: (root: string) => string;
  /** Issue 24: the family's changes not listed yet (its marks), in its slot. */
  readonly unlisted: (root: string) => string;
  /** The key list's sorted-set indexes and its stats hash (key id members/fields). */
  readonly listIndexes: readonly string[];
  readonly listStats: string;
  /** Issue 24: `revoked <id>` / `tainted <id>` fields of the changes in the feed. */
  readonly listFed: string;
  /** Sets of family roots: every shard, shards to seal, families with alerts pending. */
  readonly shardSets: readonly string[];
  /** The key list's index of every key by creation, for the one-time indexing. */
  readonly newest: string;
  /** Called with the ids of a removed family: this replica forgets what it cached of them. */
  readonly removed: (ids: readonly string[]) => void;
}

/** The Redis store's purge of expired families, on the background connection. */
export class RedisExpiry {
  private readonly redis: ExpiryClient;
  private indexed = false;

  constructor(
    redis: Redis | Cluster,
    private readonly keys: RedisExpiryKeys,
  ) {
    redis.defineCommand('kbPurgeFamily', { lua: PURGE_FAMILY_LUA });
    this.redis = redis as ExpiryClient;
  }

  /** After a root key was issued: its family's place in the order of expiry. */
  rootCreated(rootId: string, expiresAt: number): Promise<number> {
    return this.redis.zadd(EXPIRY_ROOTS, expiresAt, rootId);
  }

  /** Removes up to `limit` families whose root expired before `now - keyRetentionMs`. */
  async purge(input: ExpiryPurgeInput): Promise<ExpiryCounts & { more: boolean }> {
    await this.indexOnce();
    const cutoff = input.now - input.keyRetentionMs;
    const trimmed = Number((await this.redis.hget(ARCHIVE_STATE, 'trimmed')) ?? 0);
    let totals = NO_EXPIRY_COUNTS;
    // Families kept stay in the index: the next page starts past them.
    let offset = 0;
    for (;;) {
      const roots = await this.redis.zrangebyscore(EXPIRY_ROOTS, '-inf', `(${cutoff}`, 'LIMIT', offset, PAGE);
      for (const root of roots) {
        if (totals.families >= input.limit) return { ...totals, more: true };
        const counts = await this.purgeFamily(root, cutoff, trimmed, input.now);
        totals = addExpiryCounts(totals, counts);
        offset += counts.kept;
      }
      if (roots.length < PAGE) return { ...totals, more: false };
    }
  }

  private async purgeFamily(root: string, cutoff: number, trimmed: number, now: number): Promise<ExpiryCounts> {
    const { keys } = this;
    const members = (await this.redis.smembers(keys.members(root))).map((name) =>
      name.startsWith(keys.prefix) ? name.slice(keys.prefix.length) : name,
    );
    const ids = members.map((name) => name.slice(name.indexOf('}:k:') + 4));
    // Steps 1 and 2 done by an earlier purge that stopped before the end of step 3.
    if (members.length === 0 || (await this.redis.exists(keys.keyHash(root, root))) === 0) {
      await this.removeIndexes(root, ids);
      return NO_EXPIRY_COUNTS;
    }
    const kept = { ...NO_EXPIRY_COUNTS, kept: 1 };
    if ((await this.redis.hlen(keys.reservations(root))) > 0) return kept;
    const auditLength = await this.redis.llen(keys.auditList(root));
    if (auditLength > 0 && !(await this.archivedAndTrimmed(root, auditLength, trimmed))) return kept;
    const alerts = await this.redis.hvals(keys.alerts(root));
    if (alerts.some((raw) => (JSON.parse(raw) as { state?: string }).state === 'pending')) return kept;

    const ordered = [root, ...ids.filter((id) => id !== root)];
    const fields = await Promise.all(
      ordered.map((id) => this.redis.hmget(keys.keyHash(root, id), 'key_hash', 'created_at', 'expires_at')),
    );
    const days = ordered.flatMap((id, i) => {
      const [, created, expires] = fields[i] as (string | null)[];
      return spendDays(Number(created ?? now), Math.min(Number(expires ?? now), now)).map((day) => `${id}:${day}`);
    });
    const lookups = ordered.flatMap((id, i) => {
      const hash = (fields[i] as (string | null)[])[0];
      return hash ? [{ key: `h:${hash}`, value: `${id} ${root}` }] : [];
    });
    await Promise.all(lookups.map((lookup) => this.redis.del(lookup.key)));
    const [code, removedKeys, removedDays, removedAlerts] = await this.redis.kbPurgeFamily(
      4 + ordered.length,
      keys.reservations(root),
      keys.members(root),
      keys.auditList(root),
      keys.alerts(root),
      ...ordered.map((id) => keys.keyHash(root, id)),
      cutoff,
      auditLength,
      ...days,
    );
    if (code !== 1) {
      // A call came in between the checks and the script: the family stays whole.
      await Promise.all(lookups.map((lookup) => this.redis.set(lookup.key, lookup.value)));
      return kept;
    }
    this.keys.removed(ordered);
    await this.removeIndexes(root, ids);
    return {
      ...NO_EXPIRY_COUNTS,
      families: 1,
      keys: removedKeys ?? 0,
      spendDays: removedDays ?? 0,
      alerts: removedAlerts ?? 0,
    };
  }

  /**
   * Whether every record of the family's audit list is sealed and trimmed from the chain (on
   * Redis Cluster the trim leaves the families' lists; on one Redis it empties them).
   */
  private async archivedAndTrimmed(root: string, auditLength: number, trimmed: number): Promise<boolean> {
    const sealed = this.keys.sealedSeqs(root);
    const [length, last] = await Promise.all([this.redis.llen(sealed), this.redis.lindex(sealed, -1)]);
    return length === auditLength && last !== null && Number(last) <= trimmed;
  }

  /** Step 3: what indexes the family outside its slot, then its member set and its index entry. */
  private async removeIndexes(root: string, ids: readonly string[]): Promise<void> {
    const { keys } = this;
    await Promise.all([
      ...ids.map((id) => this.redis.del(`root:${id}`)),
      ...keys.listIndexes.map((index) => (ids.length === 0 ? 0 : this.redis.zrem(index, ...ids))),
      // A key's call stats are three fields (`RedisListing.stats`). Regression: `hdel` of the bare
      // ids removed none of them, so every purged key left its stats behind for good.
      ids.length === 0 ? 0 : this.redis.hdel(keys.listStats, ...ids.flatMap((id) => [`c:${id}`, `h:${id}`, `r:${id}`])),
      ids.length === 0 ? 0 : this.redis.hdel(keys.listFed, ...ids.flatMap((id) => [`revoked ${id}`, `tainted ${id}`])),
      // Issue 24: the marks of a family the purge script removed (it removes them too: one left by
      // an earlier version of the script, or written after, goes here).
      this.redis.del(keys.unlisted(root)),
      // With its count trimmed, in one step: a record appended late is then sealed from position 0,
      // as the purge script left its family list and that list's count (both removed together).
      this.redis.multi().del(keys.sealedSeqs(root)).hdel(keys.sealedTrimmed, root).exec(),
    ]);
    // A refused call's record appended by a replica that still had the family cached: its shard
    // stays listed, so the record is sealed and counted as any other.
    if ((await this.redis.llen(keys.auditList(root))) === 0) {
      await Promise.all(keys.shardSets.map((set) => this.redis.srem(set, root)));
    }
    await this.redis.del(keys.members(root));
    await this.redis.zrem(EXPIRY_ROOTS, root);
  }

  /** Indexes the root keys of a store written before `EXPIRY_ROOTS`, once. */
  private async indexOnce(): Promise<void> {
    if (this.indexed) return;
    if ((await this.redis.get(EXPIRY_INDEXED)) !== null) {
      this.indexed = true;
      return;
    }
    for (let start = 0; ; start += 500) {
      const ids = await this.redis.zrange(this.keys.newest, start, start + 499);
      const roots = await Promise.all(ids.map((id) => this.redis.get(`root:${id}`)));
      await Promise.all(
        ids.map(async (id, i) => {
          if (roots[i] !== id) return;
          const expires = await this.redis.hget(this.keys.keyHash(id, id), 'expires_at');
          if (expires !== null) await this.redis.zadd(EXPIRY_ROOTS, Number(expires), id);
        }),
      );
      if (ids.length < 500) break;
    }
    await this.redis.set(EXPIRY_INDEXED, '1');
    this.indexed = true;
  }
}

/**
 * The UTC days whose spend hashes of a key may still be there: those of its last
 * `DAY_HASH_DAYS` days of life (every reservation refreshes its day's TTL of 9 days, and none is
 * made after the key's end), from its creation on.
 */
function spendDays(created: number, end: number): string[] {
  const days: string[] = [];
  const from = Math.max(created, end - DAY_HASH_DAYS * DAY_MS);
  for (let at = from - (from % DAY_MS); at <= end; at += DAY_MS) days.push(utcDay(at));
  return days;
}
