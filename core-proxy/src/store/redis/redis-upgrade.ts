/**
 * What a Redis store written by an earlier release lacks, added once by the first replica of this
 * one that needs it (README "Upgrading").
 *
 * Keys issued before issue 22 are in no list index (`{list}:newest` and the two sorted by the
 * digest), so the console's key list left them out; and the expiry purge (issue 23) finds a store's
 * earlier root keys through that index, so their families were never removed either. Every key is
 * in its family's member set, and every family in `shards`, since the first Redis store: the walk
 * lists each key not yet listed (its spend and headroom follow from the digest, which reads the
 * whole audit chain of a store it never read) and indexes each root by its expiry. Safe to repeat,
 * and to run on two replicas at once (ZADD NX); `{list}:earlier-listed` marks it done.
 */
import type { Cluster, Redis } from 'ioredis';
import { initialScores } from '../key-listing.js';
import type { VaultKeyRecord } from '../store.js';
import { EXPIRY_ROOTS } from './redis-expiry.js';
import { INDEX } from './redis-listing.js';

/** Set once every key written before the key list existed is listed. */
export const EARLIER_LISTED = '{list}:earlier-listed';
/** Families read per round of the walk. */
const FAMILIES_PER_ROUND = 100;

/** The Redis store's names and readers the walk needs (see `redis-store.ts`). */
export interface EarlierKeysLayout {
  /** The prefix ioredis adds, which the member set's names carry. */
  readonly prefix: string;
  readonly shards: string;
  readonly noKeyShard: string;
  readonly members: (root: string) => string;
  readonly keyHash: (root: string, id: string) => string;
  readonly toRecord: (fields: Record<string, string>) => VaultKeyRecord;
}

/** Lists the keys an earlier release issued, once (see the file's comment). Returns how many it listed. */
export async function listEarlierKeys(redis: Redis | Cluster, layout: EarlierKeysLayout): Promise<number> {
  if ((await redis.get(EARLIER_LISTED)) !== null) return 0;
  const roots = (await redis.smembers(layout.shards)).filter((root) => root !== layout.noKeyShard);
  let listed = 0;
  for (let start = 0; start < roots.length; start += FAMILIES_PER_ROUND) {
    const counts = await Promise.all(
      roots.slice(start, start + FAMILIES_PER_ROUND).map((root) => listFamily(redis, layout, root)),
    );
    listed += counts.reduce((sum, count) => sum + count, 0);
  }
  await redis.set(EARLIER_LISTED, String(Date.now()));
  return listed;
}

async function listFamily(redis: Redis | Cluster, layout: EarlierKeysLayout, root: string): Promise<number> {
  const ids = (await redis.smembers(layout.members(root))).map((name) => {
    const unprefixed = name.startsWith(layout.prefix) ? name.slice(layout.prefix.length) : name;
    return unprefixed.slice(unprefixed.indexOf('}:k:') + 4);
  });
  let listed = 0;
  for (const id of ids) {
    const fields = await redis.hgetall(layout.keyHash(root, id));
    // A family being removed by the purge (its hashes already gone): nothing to list.
    if (!fields.key_id) continue;
    const record = layout.toRecord(fields);
    const scores = initialScores(record);
    const [added] = (await redis
      .multi()
      .zadd(INDEX.newest, 'NX', record.createdAt, record.keyId)
      .zadd(INDEX.most_spent, 'NX', scores.spent, record.keyId)
      .zadd(INDEX.closest_to_cap, 'NX', scores.headroom, record.keyId)
      .exec()) ?? [[null, 0]];
    if (added?.[1] === 1) listed += 1;
    if (record.parentKeyId === null) await redis.zadd(EXPIRY_ROOTS, 'NX', record.expiresAt, record.keyId);
  }
  return listed;
}
