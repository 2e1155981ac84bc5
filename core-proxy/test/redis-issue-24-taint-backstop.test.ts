import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { RedisStore } from '../src/index.js';
import { closeOpenedAfterEach, reachable } from './store-backends.js';
import { testKeyRecord } from './store-fixtures.js';

/**
 * Issue 24, the taint half, on the store (the process-level test, `redis-issue-24-unlisted-key`,
 * kills replicas while issuing and revoking). The lost write is simulated here: the store's next
 * listing of a `tainted` change fails, as for a replica killed right after the taint script.
 */

closeOpenedAfterEach();

const NOW = Date.now();

interface Listing {
  relistUnlisted(now: number): Promise<number>;
}
const listingOf = (store: RedisStore): Listing => (store as unknown as { listing: Listing }).listing;

/** Makes the store's next listing of a `change` fail (simulated replica death). */
function loseNextListing(store: RedisStore, change: string): { lost: () => boolean } {
  type List = (change: string, args: readonly (string | number)[]) => Promise<number>;
  const listing = listingOf(store) as unknown as { list: List };
  const original = listing.list.bind(listing);
  let lost = false;
  listing.list = async (kind, args) => {
    if (kind === change && !lost) {
      lost = true;
      throw new Error('replica killed between the taint script and its listing');
    }
    return original(kind, args);
  };
  return { lost: () => lost };
}

async function changes(store: RedisStore): Promise<string[]> {
  const read = await store.readKeyChanges('0-0', 1000);
  return read.changes.map((change) => `${change.change} ${change.keyId}`);
}

describe('issue 24: a taint whose feed change was lost reaches the feed through the backstop, once', () => {
  for (const [topology, urlOf] of [
    ['one Redis', () => inject('redisUrl')],
    ['Redis Cluster', () => inject('redisClusterUrl')],
  ] as const) {
    it(`${topology}: the lost taint of a parent and its child is listed by the backstop; a listed one is never listed again`, async () => {
      const store = new RedisStore({ url: urlOf(), prefix: `t:${randomUUID()}:` });
      await reachable(store);
      const [parent, child, other] = ['p', 'c', 'o'].map((name) => `key_${name}${randomUUID().slice(0, 12)}`) as [
        string,
        string,
        string,
      ];
      await store.createKey(testKeyRecord(parent, NOW));
      await store.createKey(testKeyRecord(child, NOW, { parentKeyId: parent }));
      await store.createKey(testKeyRecord(other, NOW));
      // Listed normally: nothing is left for the backstop, even once the grace period is over.
      expect(await store.taintKey(other)).toBe(true);
      expect(await listingOf(store).relistUnlisted(NOW + 3_600_000)).toBe(0);

      const listing = loseNextListing(store, 'tainted');
      await expect(store.taintKey(parent)).rejects.toThrow();
      expect(listing.lost()).toBe(true);
      expect((await store.getKey(child, NOW))?.tainted).toBe(true);
      // The gap: tainted in the family, not in the feed.
      expect((await changes(store)).filter((change) => change.startsWith('tainted'))).toEqual([`tainted ${other}`]);
      // Within the grace period the backstop leaves it to its caller; after it, it lists both, once.
      expect(await listingOf(store).relistUnlisted(Date.now())).toBe(0);
      expect(await listingOf(store).relistUnlisted(Date.now() + 60_000)).toBe(2);
      expect(await listingOf(store).relistUnlisted(Date.now() + 60_000)).toBe(0);
      expect((await changes(store)).sort()).toEqual(
        [parent, child, other].flatMap((id) => [`issued ${id}`, `tainted ${id}`]).sort(),
      );
    });
  }
});
