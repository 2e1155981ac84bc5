import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { startAlertReceiver } from './alert-receiver.js';
import { json, stripeCharge, stripeMockProxy, type TestProxy } from './helpers.js';

const DAY_MS = 24 * 3600 * 1000;

/** A proxy (the project's store) in front of stripe-mock, with its alert webhook pointed at `url`. */
function alertingProxy(url: string, secret: string | null, extra: Record<string, string> = {}): Promise<TestProxy> {
  return stripeMockProxy({
    env: {
      KEYBRAKE_ALERT_WEBHOOK_URL: url,
      ...(secret === null ? {} : { KEYBRAKE_ALERT_WEBHOOK_SECRET: secret }),
      KEYBRAKE_ALERT_RETRY_BASE_MS: '200',
      KEYBRAKE_ALERT_TIMEOUT_MS: '3000',
      ...extra,
    },
  });
}

/** The key's view once no delivery of `fired` alerts is pending (the sender records it after the receiver's 200). */
async function settledView(proxy: TestProxy, keyId: string, fired: number): Promise<any> {
  for (;;) {
    const view = (await proxy.admin('GET', `/vault/keys/${keyId}`)).body;
    const entries = [...view.alerts.flatMap((a: { fired: unknown[] }) => a.fired), ...view.cap_hit_alerts];
    if (entries.length >= fired && entries.every((entry) => entry.deliveries[0].state !== 'pending')) return view;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function metric(proxy: TestProxy, name: string, type: string): Promise<number> {
  const text = await (await proxy.call('/metrics')).text();
  const line = text.split('\n').find((entry) => entry.startsWith(`${name}{type="${type}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('issue 26: threshold alerts', () => {
  it('bad `alerts` input is refused with 400 invalid_request; good input is echoed, sorted, and defaults apply only with a webhook', async () => {
    const receiver = await startAlertReceiver({ secret: 'unused' });
    const proxy = await alertingProxy(receiver.url, 'unused');
    const base = { vendor: 'stripe', usd_cap: 10, allowed_endpoints: ['POST /v1/payment_intents'], expires_in: '1h' };
    const bad: unknown[] = [
      'x',
      { at_fraction: 0.5 },
      [0.5],
      [{}],
      [{ at_fraction: 0 }],
      [{ at_fraction: -0.2 }],
      [{ at_fraction: 1.0001 }],
      [{ at_fraction: '0.5' }],
      [{ at_fraction: null }],
      [{ at_fraction: 0.5 }, { at_fraction: 0.5 }],
      [{ at_fraction: 0.5, channel: '#ops' }],
      Array.from({ length: 11 }, (_, i) => ({ at_fraction: (i + 1) / 11 })),
    ];
    for (const alerts of bad) {
      const response = await proxy.admin('POST', '/vault/keys', { ...base, alerts });
      expect(response.status, JSON.stringify(alerts)).toBe(400);
      expect(response.body.error.code).toBe('invalid_request');
    }
    const issued = await proxy.issueKey({ ...base, alerts: [{ at_fraction: 0.9 }, { at_fraction: 0.25 }] });
    expect(issued.alerts).toEqual([{ at_fraction: 0.25 }, { at_fraction: 0.9 }]);
    const view = (await proxy.admin('GET', `/vault/keys/${issued.key_id}`)).body;
    expect(view.alerts).toEqual([
      { at_fraction: 0.25, fired: [] },
      { at_fraction: 0.9, fired: [] },
    ]);
    expect(view.cap_hit_alerts).toEqual([]);
    // Absent: the server's defaults (KEYBRAKE_ALERT_THRESHOLDS, 0.8,1 unless set); [] opts out.
    expect((await proxy.issueKey(base)).alerts).toEqual([{ at_fraction: 0.8 }, { at_fraction: 1 }]);
    expect((await proxy.issueKey({ ...base, alerts: [] })).alerts).toEqual([]);
    const noWebhook = await stripeMockProxy({ env: { KEYBRAKE_ALERT_THRESHOLDS: '0.5' } });
    expect((await noWebhook.issueKey(base)).alerts).toEqual([]);
    const custom = await alertingProxy(receiver.url, 'unused', { KEYBRAKE_ALERT_THRESHOLDS: '0.5, 0.75' });
    expect((await custom.issueKey(base)).alerts).toEqual([{ at_fraction: 0.5 }, { at_fraction: 0.75 }]);
  });

  it('each threshold and the cap hit fire once per key, signed, and arrive through a receiver that answers 500 first', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret, failFirst: 2 });
    const proxy = await alertingProxy(receiver.url, secret);
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/payment_intents'],
      alerts: [{ at_fraction: 0.5 }, { at_fraction: 1 }],
    });
    // $3, $3 (past 50%: fires once, not again at $6), $3, $1 (exactly the cap: 100%).
    for (const cents of [300, 300, 300, 100])
      expect((await stripeCharge(proxy, key.vault_key, cents)).status).toBe(200);
    // Refused five times: one cap-hit alert, not five (LiteLLM #3738: never one per request).
    for (let i = 0; i < 5; i += 1) {
      const refused = await stripeCharge(proxy, key.vault_key, 100);
      expect(refused.status).toBe(429);
      expect((await json(refused)).error.code).toBe('cap_exhausted');
    }
    await receiver.until(() => receiver.distinct().size >= 3, 'three alerts');
    const byKind = [...receiver.distinct().values()].map(
      (alert) => `${alert.type} ${alert.cap} ${alert.period} ${alert.at_fraction}`,
    );
    expect(byKind.sort()).toEqual([
      'keybrake.alert.cap_hit lifetime lifetime null',
      'keybrake.alert.threshold lifetime lifetime 0.5',
      'keybrake.alert.threshold lifetime lifetime 1',
    ]);
    expect(receiver.bad).toEqual([]);
    expect(receiver.answered500()).toBe(2);
    const half = [...receiver.distinct().values()].find((alert) => alert.at_fraction === 0.5);
    expect(half).toMatchObject({
      key_id: key.key_id,
      agent_run_label: key.agent_run_label,
      vendor: 'stripe',
      spent_usd: 6,
      cap_usd: 10,
    });
    expect(Object.keys(half ?? {}).sort()).toEqual(
      [
        'agent_run_label',
        'at_fraction',
        'cap',
        'cap_usd',
        'created_at',
        'id',
        'key_id',
        'period',
        'spent_usd',
        'type',
        'vendor',
      ].sort(),
    );
    const capHit = [...receiver.distinct().values()].find((alert) => alert.type === 'keybrake.alert.cap_hit');
    expect(capHit).toMatchObject({ spent_usd: 10, cap_usd: 10 });
    for (const alert of receiver.raw) expect(JSON.stringify(alert)).not.toContain(key.vault_key);

    // The key's view shows what fired and how its delivery went.
    const view = await settledView(proxy, key.key_id, 3);
    const fired = [...view.alerts.flatMap((a: { fired: unknown[] }) => a.fired), ...view.cap_hit_alerts];
    expect(fired).toHaveLength(3);
    const ids = new Set<string>();
    let attempts = 0;
    for (const entry of fired) {
      expect(entry).toMatchObject({ period: 'lifetime', cap: 'lifetime' });
      expect(entry.deliveries).toHaveLength(1);
      expect(entry.deliveries[0]).toMatchObject({ state: 'delivered', last_status: 200 });
      ids.add(entry.deliveries[0].id);
      attempts += entry.deliveries[0].attempts;
    }
    expect(ids).toEqual(new Set(receiver.distinct().keys()));
    // Every 500 was one more attempt of some alert.
    expect(attempts).toBeGreaterThanOrEqual(3 + 2);
    expect(await metric(proxy, 'keybrake_alerts_sent_total', 'keybrake.alert.threshold')).toBe(2);
    expect(await metric(proxy, 'keybrake_alerts_sent_total', 'keybrake.alert.cap_hit')).toBe(1);
    expect(await metric(proxy, 'keybrake_alerts_failed_total', 'keybrake.alert.threshold')).toBe(0);
    console.log(
      `[figures] issue 26 (${process.env.KEYBRAKE_TEST_STORE}): 3 alerts, ${receiver.raw.length} raw deliveries, ${attempts} attempts`,
    );
  });

  it("a child's thresholds are on its own spend; its spend also fires its parent's", async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret });
    const proxy = await alertingProxy(receiver.url, secret);
    const endpoints = ['POST /v1/payment_intents'];
    const parent = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: endpoints,
      alerts: [{ at_fraction: 0.5 }],
    });
    const child = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 4,
      allowed_endpoints: endpoints,
      parent_key_id: parent.key_id,
      alerts: [{ at_fraction: 0.75 }],
    });
    // Child $3 (75% of its $4), then parent $2 ($5 in all: 50% of the parent's $10).
    expect((await stripeCharge(proxy, child.vault_key, 300)).status).toBe(200);
    expect((await stripeCharge(proxy, parent.vault_key, 200)).status).toBe(200);
    await receiver.until(() => receiver.distinct().size >= 2, 'two alerts');
    const seen = [...receiver.distinct().values()].map(
      (alert) => `${alert.key_id} ${alert.at_fraction} ${alert.spent_usd}`,
    );
    expect(seen.sort()).toEqual([`${child.key_id} 0.75 3`, `${parent.key_id} 0.5 5`].sort());
  });

  it('a daily cap threshold fires again the next UTC day, and waits out a receiver outage', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret });
    const proxy = await alertingProxy(receiver.url, secret);
    const key = await proxy.issueKey({
      vendor: 'stripe',
      daily_usd_cap: 2,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '3d',
      alerts: [{ at_fraction: 0.5 }],
    });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    expect((await stripeCharge(proxy, key.vault_key, 50)).status).toBe(200);
    await receiver.until(() => receiver.distinct().size >= 1, 'the first day alert');
    const first = [...receiver.distinct().values()][0];
    expect(first).toMatchObject({ cap: 'daily', at_fraction: 0.5, spent_usd: 1, cap_usd: 2 });

    // The receiver goes down; the next UTC day (the proxy's clock) the threshold fires again.
    await receiver.stop();
    proxy.advance(DAY_MS);
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    const nextDay = async () => {
      const view = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
      return view.alerts[0].fired.find((entry: { period: string }) => entry.period !== first?.period);
    };
    // Attempted against the closed port and kept for later, not lost.
    for (;;) {
      const entry = await nextDay();
      if (entry && entry.deliveries[0].attempts >= 2) {
        expect(entry.deliveries[0]).toMatchObject({ state: 'pending', last_status: null });
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await receiver.start();
    await receiver.until(() => receiver.distinct().size >= 2, 'the second day alert');
    const periods = [...receiver.distinct().values()].map((alert) => alert.period);
    expect(periods).toHaveLength(2);
    expect(new Set(periods).size).toBe(2);
    expect(Date.parse(`${periods[1]}T00:00:00Z`) - Date.parse(`${periods[0]}T00:00:00Z`)).toBe(DAY_MS);
    await settledView(proxy, key.key_id, 2);
    expect((await nextDay()).deliveries[0]).toMatchObject({ state: 'delivered', last_status: 200 });
  });

  it('gives up after KEYBRAKE_ALERT_MAX_ATTEMPTS on 500s, and at once on a 4xx: marked failed, counted, no longer pending', async () => {
    const secret = randomBytes(32).toString('hex');
    // Answers 500 to every well-signed delivery for this test's whole length.
    const down = await startAlertReceiver({ secret, failFirst: 1_000_000 });
    const proxy = await alertingProxy(down.url, secret, { KEYBRAKE_ALERT_MAX_ATTEMPTS: '3' });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      alerts: [{ at_fraction: 1 }],
    });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    const view = await settledView(proxy, key.key_id, 1);
    expect(view.alerts[0].fired[0].deliveries[0]).toMatchObject({ state: 'failed', attempts: 3, last_status: 500 });
    expect(down.answered500()).toBe(3);
    expect(await metric(proxy, 'keybrake_alerts_failed_total', 'keybrake.alert.threshold')).toBe(1);
    expect(await metric(proxy, 'keybrake_alerts_sent_total', 'keybrake.alert.threshold')).toBe(0);

    // A receiver that refuses the signature (400): one attempt, then failed.
    const wrongSecret = await startAlertReceiver({ secret: 'not the secret' });
    const refusing = await alertingProxy(wrongSecret.url, secret);
    const other = await refusing.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      alerts: [{ at_fraction: 1 }],
    });
    expect((await stripeCharge(refusing, other.vault_key, 100)).status).toBe(200);
    const refused = await settledView(refusing, other.key_id, 1);
    expect(refused.alerts[0].fired[0].deliveries[0]).toMatchObject({ state: 'failed', attempts: 1, last_status: 400 });
    expect(wrongSecret.bad).toEqual(['signature mismatch']);
    // The gauge is the outbox as the sender last counted it: at its next claim, after this failure.
    while ((await metric(refusing, 'keybrake_alerts_pending', 'keybrake.alert.threshold')) !== 0) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(await metric(refusing, 'keybrake_alerts_failed_total', 'keybrake.alert.threshold')).toBe(1);
  });

  it('the Slack format posts {"text"} naming the key and threshold, with no vault key', async () => {
    const receiver = await startAlertReceiver({ secret: null });
    const proxy = await alertingProxy(receiver.url, null, { KEYBRAKE_ALERT_FORMAT: 'slack' });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/payment_intents'],
      agent_run_label: 'run <!channel> & co',
      alerts: [{ at_fraction: 1 }],
    });
    expect((await stripeCharge(proxy, key.vault_key, 100)).status).toBe(200);
    await receiver.until(() => receiver.texts.length >= 1, 'a Slack message');
    const text = receiver.texts[0] as string;
    expect(text).toContain(key.key_id);
    expect(text).toContain('100% of its lifetime cap');
    expect(text).toContain('&lt;!channel&gt; &amp; co');
    expect(text).not.toContain(key.vault_key);
  });
});
