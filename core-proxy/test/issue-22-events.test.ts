import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { callEvents, keyEvents, openFeed } from './event-stream.js';
import { type TestProxy, json, startProxy, stripeCharge, stripeMockProxy } from './helpers.js';

const stripeKey = { vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'] };

/** No feed bytes carry a vault key this proxy issued, or a vendor secret. */
function expectNoSecrets(proxy: TestProxy, raw: string): void {
  for (const vaultKey of proxy.issuedVaultKeys())
    expect(raw.includes(vaultKey), 'the feed leaks a vault key').toBe(false);
  for (const secret of Object.values(proxy.secrets))
    expect(raw.includes(secret), 'the feed leaks a secret').toBe(false);
  expect(raw).not.toMatch(/kb_vk_/);
}

describe('issue 22: GET /events (the live feed, Server-Sent Events)', () => {
  it('is behind the issuer key, and refuses bad filters and event ids with 400, an unknown key with 404', async () => {
    const proxy = await startProxy();
    for (const authorization of [undefined, 'Bearer wrong', `Bearer ${proxy.apiKey}x`]) {
      const response = await proxy.call('/events', { headers: authorization ? { authorization } : {} });
      expect(response.status).toBe(401);
      expect((await json(response)).error.code).toBe('unauthorized');
    }
    const auth = { authorization: `Bearer ${proxy.apiKey}` };
    for (const [query, headers] of [
      ['colour=red', {}],
      ['key_id=', {}],
      ['label_prefix=', {}],
      ['key_id=a&key_id=b', {}],
      [`label_prefix=${'x'.repeat(201)}`, {}],
      ['', { 'last-event-id': 'yesterday' }],
      ['', { 'last-event-id': '-1_0' }],
    ] as const) {
      const response = await proxy.call(`/events?${query}`, { headers: { ...auth, ...headers } });
      expect(response.status, `${query} ${JSON.stringify(headers)}`).toBe(400);
      expect((await json(response)).error.code).toBe('invalid_request');
    }
    const unknown = await proxy.call('/events?key_id=key_nothing', { headers: auth });
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error.code).toBe('not_found');
  });

  it('streams the calls and key changes of a key and its descendants, only theirs, and a revocation live', async () => {
    const proxy = await stripeMockProxy();
    const parent = await proxy.issueKey(stripeKey);
    const other = await proxy.issueKey(stripeKey);
    const feed = await openFeed(proxy.url, proxy.apiKey, `key_id=${parent.key_id}`);
    expect(feed.status).toBe(200);
    expect(feed.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const everything = await openFeed(proxy.url, proxy.apiKey);

    const child = await proxy.issueKey({ ...stripeKey, usd_cap: 10, parent_key_id: parent.key_id });
    expect((await stripeCharge(proxy, parent.vault_key, 500)).status).toBe(200);
    expect((await stripeCharge(proxy, child.vault_key, 700)).status).toBe(200);
    expect((await stripeCharge(proxy, other.vault_key, 900)).status).toBe(200);
    await feed.until((events) => callEvents(events).length >= 2, 'two calls');
    const calls = await proxy.admin('GET', `/vault/keys/${child.key_id}/calls`);
    expect(callEvents(feed.events).at(-1)).toEqual(calls.body.calls[0]);
    expect(callEvents(feed.events).map((call) => [call.key_id, call.cost_usd])).toEqual([
      [parent.key_id, 5],
      [child.key_id, 7],
    ]);
    expect(keyEvents(feed.events)).toEqual([
      expect.objectContaining({
        key_id: child.key_id,
        change: 'issued',
        parent_key_id: parent.key_id,
        status: 'active',
      }),
    ]);

    // Revoked through the admin API: the family's key events arrive, and the next call is refused live.
    expect((await proxy.admin('DELETE', `/vault/keys/${parent.key_id}`)).status).toBe(200);
    await feed.until((events) => keyEvents(events).length >= 3, 'the revocations');
    expect(
      keyEvents(feed.events)
        .slice(1)
        .map((event) => [event.key_id, event.change, event.status])
        .sort(),
    ).toEqual(
      [
        [parent.key_id, 'revoked', 'revoked'],
        [child.key_id, 'revoked', 'revoked'],
      ].sort(),
    );
    const refused = await stripeCharge(proxy, child.vault_key, 100);
    expect(refused.status).toBe(401);
    expect((await json(refused)).error.code).toBe('vault_key_revoked');
    await feed.until((events) => callEvents(events).length >= 3, 'the refused call');
    expect(callEvents(feed.events)[2]).toMatchObject({
      key_id: child.key_id,
      outcome: 'blocked',
      reason: 'vault_key_revoked',
    });
    // The unfiltered feed has the other key's call too; the filtered one never does.
    await everything.until((events) => callEvents(events).length >= 4, 'every call');
    expect(callEvents(everything.events).map((call) => call.key_id)).toContain(other.key_id);
    expect(callEvents(feed.events).map((call) => call.key_id)).not.toContain(other.key_id);
    // Each event has an id, increasing in both parts.
    const ids = feed.events.filter((event) => event.event !== undefined).map((event) => event.id as string);
    expect(new Set(ids).size).toBe(ids.length);
    expectNoSecrets(proxy, feed.raw() + everything.raw());
  });

  it('filters by label prefix', async () => {
    const proxy = await stripeMockProxy();
    const billing = await proxy.issueKey({ ...stripeKey, agent_run_label: 'argo/billing-1' });
    const support = await proxy.issueKey({ ...stripeKey, agent_run_label: 'argo/support-1' });
    const feed = await openFeed(proxy.url, proxy.apiKey, 'label_prefix=argo%2Fbill');
    for (const key of [support, billing, support]) {
      expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    }
    await feed.until((events) => callEvents(events).length >= 1, 'the billing call');
    const late = await proxy.issueKey({ ...stripeKey, agent_run_label: 'argo/billing-2' });
    await feed.until((events) => keyEvents(events).length >= 1, 'the billing key issued');
    expect((await stripeCharge(proxy, support.vault_key, 100)).status).toBe(200);
    expect((await stripeCharge(proxy, late.vault_key, 100)).status).toBe(200);
    await feed.until((events) => callEvents(events).length >= 2, 'the second billing call');
    expect(callEvents(feed.events).map((call) => call.key_id)).toEqual([billing.key_id, late.key_id]);
    expect(keyEvents(feed.events).map((event) => [event.key_id, event.change])).toEqual([[late.key_id, 'issued']]);
  });

  it('resumes after a reconnect with Last-Event-ID: every event missed, none twice', async () => {
    const proxy = await stripeMockProxy();
    const key = await proxy.issueKey(stripeKey);
    const first = await openFeed(proxy.url, proxy.apiKey, `key_id=${key.key_id}`);
    for (let i = 0; i < 3; i += 1) expect((await stripeCharge(proxy, key.vault_key, 100 + i)).status).toBe(200);
    await first.until((events) => callEvents(events).length >= 3, 'three calls');
    const resumeFrom = first.lastEventId() as string;
    first.close();
    for (let i = 3; i < 6; i += 1) expect((await stripeCharge(proxy, key.vault_key, 100 + i)).status).toBe(200);
    expect((await proxy.admin('POST', `/vault/keys/${key.key_id}/taint`)).status).toBe(200);
    const second = await openFeed(proxy.url, proxy.apiKey, `key_id=${key.key_id}`, { 'last-event-id': resumeFrom });
    await second.until(
      (events) => callEvents(events).length >= 3 && keyEvents(events).length >= 1,
      'the missed calls and the taint',
    );
    const all = await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`);
    expect([...callEvents(first.events), ...callEvents(second.events)]).toEqual(all.body.calls);
    expect(keyEvents(second.events)).toEqual([
      expect.objectContaining({ key_id: key.key_id, change: 'tainted', tainted: true }),
    ]);
  });

  it('sends a `: ping` comment while nothing happens', async () => {
    const proxy = await startProxy();
    const feed = await openFeed(proxy.url, proxy.apiKey);
    await feed.until((events) => events.some((event) => event.comment === 'ping'), 'a ping');
  }, 90_000);

  it('holds a stalled consumer at its socket and, once it reads again far behind, skips it on with a resync event', async () => {
    const proxy = await startProxy();
    const key = await proxy.issueKey(stripeKey);
    const { port } = new URL(proxy.url);
    // A client that sends its request and then reads nothing, for now.
    const socket = connect(Number(port), '127.0.0.1');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write(`GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${proxy.apiKey}\r\n\r\n`);
    while (!received.includes('retry:')) await sleep(10);
    socket.pause();
    // Calls refused at the allowlist, each with a long path: about 4 KB of feed each, 12 MB in all.
    const path = `/stripe/v1/${'a'.repeat(4000)}`;
    // More than MAX_LAG_RECORDS (1,000) past what the kernel's socket buffers hold.
    const refusals = 3000;
    let sent = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (sent < refusals) {
          sent += 1;
          const response = await proxy.call(path, {
            method: 'GET',
            headers: { authorization: `Bearer ${key.vault_key}` },
          });
          expect(response.status).toBe(403);
          await response.arrayBuffer();
        }
      }),
    );
    // Every refusal is in the chain (reading calls seals it on Redis) while the client still stalls.
    const calls = await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`);
    expect(calls.body.calls).toHaveLength(refusals);
    socket.resume();
    for (let i = 0; i < 6000 && !received.includes('event: resync'); i += 1) await sleep(20);
    const marker = await proxy.issueKey({ ...stripeKey, agent_run_label: 'after-the-stall' });
    for (let i = 0; i < 3000 && !received.includes(marker.key_id); i += 1) await sleep(20);
    socket.destroy();
    expect(received).toContain('event: resync');
    expect(received).toContain('"reason":"slow_consumer"');
    // Live again after the resync: the key issued afterwards arrived.
    expect(received).toContain(marker.key_id);
    // Events in between were skipped, not queued.
    const callEventsReceived = received.split('event: call').length - 1;
    expect(callEventsReceived).toBeLessThan(refusals);
    expectNoSecrets(proxy, received);
  }, 300_000);
});
