import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import { expect } from 'vitest';
import { callEvents, keyEvents, type FeedStream } from './event-stream.js';
import { type AdminClient, issueStripeKey } from './helpers.js';

/** One charge on a connection of its own (`serve --workers`: the next worker takes each new connection). */
export async function chargeOnNewConnection(baseUrl: string, vaultKey: string, cents: number): Promise<number> {
  const agent = new Agent({ connections: 1 });
  try {
    const response = await undiciFetch(`${baseUrl}/stripe/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: `amount=${cents}&currency=usd`,
      dispatcher: agent,
    });
    await response.arrayBuffer();
    return response.status;
  } finally {
    await agent.close();
  }
}

/**
 * Through `through` (another worker or replica than the one `feed` is on): charges and a
 * revocation, which `feed` must show, and the refused charge after it.
 */
export async function expectFeedSeesAnother(feed: FeedStream, throughUrl: string, admin: AdminClient): Promise<void> {
  const key = await issueStripeKey(admin);
  const charges = 6;
  for (let i = 0; i < charges; i += 1)
    expect(await chargeOnNewConnection(throughUrl, key.vault_key, 100 + i)).toBe(200);
  await feed.until(
    (events) => callEvents(events).filter((call) => call.key_id === key.key_id).length >= charges,
    'the charges made elsewhere',
  );
  expect((await admin('DELETE', `/vault/keys/${key.key_id}`)).status).toBe(200);
  await feed.until(
    (events) => keyEvents(events).some((event) => event.key_id === key.key_id && event.change === 'revoked'),
    'the revocation made elsewhere',
  );
  expect(await chargeOnNewConnection(throughUrl, key.vault_key, 100)).toBe(401);
  await feed.until(
    (events) => callEvents(events).some((call) => call.key_id === key.key_id && call.reason === 'vault_key_revoked'),
    'the refused charge',
  );
  const mine = callEvents(feed.events).filter((call) => call.key_id === key.key_id);
  expect(mine.map((call) => call.cost_usd)).toEqual([1, 1.01, 1.02, 1.03, 1.04, 1.05, 0]);
  expect(
    keyEvents(feed.events)
      .filter((event) => event.key_id === key.key_id)
      .map((event) => event.change),
  ).toEqual(['issued', 'revoked']);
}

/** Waits until `output` has `count` lines matching. */
export async function untilLogged(output: () => string, pattern: RegExp, count: number): Promise<void> {
  while (
    output()
      .split('\n')
      .filter((line) => pattern.test(line)).length < count
  )
    await sleep(20);
}
