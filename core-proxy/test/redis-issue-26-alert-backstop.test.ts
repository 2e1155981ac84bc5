import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { type AuditInput, type ReserveInput, type VaultKeyRecord, RedisStore } from '../src/index.js';
import { closeOpenedAfterEach, reachable } from './store-backends.js';
import { testAuditInput, testKeyRecord, testReserveInput } from './store-fixtures.js';

/**
 * Issue 26: on Redis Cluster an alert fired in the settle script (the family's slot) is listed for
 * the senders (`alert-families`, another slot) by the replica afterwards. A replica killed between
 * the two used to leave the alert where no sender looks, pending forever. The gap is simulated here
 * (the listing `SADD` of the replica that fired fails, as it would for a replica killed right after
 * the script): the alert must still reach a sender, through the backstop.
 */

closeOpenedAfterEach();

const NOW = Date.now();

function keyRecord(keyId: string): VaultKeyRecord {
  return testKeyRecord(keyId, NOW, { capMicros: 2_000_000, agentRunLabel: 'backstop', alertFractions: [0.5] });
}

function reserveInput(keyId: string, costMicros: number): ReserveInput {
  return testReserveInput(keyId, NOW, { costMicros });
}

const auditInput = (keyId: string, costMicros: number): AuditInput =>
  testAuditInput(keyId, NOW, { costMicros, vendorRequestId: 'req_1' });

/** Makes the store's next `SADD alert-families` fail, as for a replica killed right after its script. */
function loseNextListing(store: RedisStore): { lost: () => boolean } {
  const client = (store as unknown as { redis: { sadd: (key: string, ...members: string[]) => Promise<number> } })
    .redis;
  const original = client.sadd.bind(client);
  let lost = false;
  client.sadd = async (key: string, ...members: string[]) => {
    if (key === 'alert-families' && !lost) {
      lost = true;
      throw new Error('replica killed between the settle script and its listing');
    }
    return original(key, ...members);
  };
  return { lost: () => lost };
}

const ALERT_TYPE = 'keybrake.alert.threshold';

describe('issue 26: the Redis Cluster alert backstop (the fired-but-unlisted gap, simulated)', () => {
  it('an alert whose listing was lost is claimed by the next replica to start (its first claim relists) and by a running one within alertRelistMs', async () => {
    const url = inject('redisClusterUrl');
    const prefix = `t:${randomUUID()}:`;
    // A running replica whose backstop has run (its first claim) and is not due again in this test.
    const running = new RedisStore({ url, prefix, alertRelistMs: 3_600_000 });
    await reachable(running);
    expect((await running.claimAlerts({ now: NOW, leaseMs: 60_000, limit: 10 })).claimed).toEqual([]);

    // The replica that fires the 50% alert "dies" between the settle script and the listing.
    const doomed = new RedisStore({ url, prefix });
    await reachable(doomed);
    const keyId = `key_${randomUUID().slice(0, 16)}`;
    await doomed.createKey(keyRecord(keyId));
    const listing = loseNextListing(doomed);
    const input = reserveInput(keyId, 1_500_000);
    expect((await doomed.reserve(input)).kind).toBe('reserved');
    expect(
      await doomed.settle({
        keyId,
        reservationId: input.reservationId,
        actualMicros: 1_500_000,
        idempotentResponse: null,
        audit: auditInput(keyId, 1_500_000),
      }),
    ).toBe(true);
    expect(listing.lost()).toBe(true);
    // Fired once, in the family's slot, and pending...
    const fired = (await running.keyAlerts(keyId)).fired;
    expect(fired.map((alert) => [alert.type, alert.atFraction, alert.state])).toEqual([[ALERT_TYPE, 0.5, 'pending']]);
    // ...but listed nowhere: a sender whose backstop is not due finds nothing (the gap).
    expect((await running.claimAlerts({ now: NOW, leaseMs: 60_000, limit: 10 })).claimed).toEqual([]);

    // A replica that starts now (a restart, a new pod) relists on its first claim: the alert is delivered.
    const next = new RedisStore({ url, prefix, alertRelistMs: 3_600_000 });
    await reachable(next);
    const claimed = await next.claimAlerts({ now: NOW, leaseMs: 60_000, limit: 10 });
    expect(claimed.claimed.map((alert) => [alert.id, alert.keyId, alert.attempts])).toEqual([[fired[0]!.id, keyId, 1]]);
    expect(claimed.pending[ALERT_TYPE]).toBe(1);
    await next.finishAlert({ id: fired[0]!.id, keyId, state: 'delivered', lastStatus: 200, nextAttemptAt: 0 });
    expect((await running.keyAlerts(keyId)).fired.map((alert) => alert.state)).toEqual(['delivered']);
  });

  it('a running replica relists on its own schedule, and an alert listed normally leaves no marker to relist', async () => {
    const url = inject('redisClusterUrl');
    const prefix = `t:${randomUUID()}:`;
    const store = new RedisStore({ url, prefix, alertRelistMs: 0 });
    await reachable(store);
    const [lostKey, listedKey] = [`key_${randomUUID().slice(0, 16)}`, `key_${randomUUID().slice(0, 16)}`];
    for (const keyId of [lostKey, listedKey]) await store.createKey(keyRecord(keyId));
    const spend = async (keyId: string) => {
      const input = reserveInput(keyId, 1_000_000);
      expect((await store.reserve(input)).kind).toBe('reserved');
      await store.settle({
        keyId,
        reservationId: input.reservationId,
        actualMicros: 1_000_000,
        idempotentResponse: null,
        audit: auditInput(keyId, 1_000_000),
      });
    };
    const listing = loseNextListing(store);
    await spend(lostKey);
    expect(listing.lost()).toBe(true);
    await spend(listedKey);
    const relisted = await (
      store as unknown as { alerts: { relistUnlisted(): Promise<number> } }
    ).alerts.relistUnlisted();
    // Only the lost family had a marker left (the listed one's caller cleared it).
    expect(relisted).toBe(1);
    const claimed = await store.claimAlerts({ now: NOW, leaseMs: 60_000, limit: 10 });
    expect(claimed.claimed.map((alert) => alert.keyId).sort()).toEqual([lostKey, listedKey].sort());
  });
});
