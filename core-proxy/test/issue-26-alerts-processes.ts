import { Agent, fetch as undiciFetch } from 'undici';
import { expect, onTestFinished } from 'vitest';
import type { startAlertReceiver } from './alert-receiver.js';
import type { AdminClient } from './helpers.js';

/** Environment of a `keybrake serve` that alerts to `url`. */
export function alertEnvironment(url: string, secret: string): Record<string, string> {
  return {
    KEYBRAKE_ALERT_WEBHOOK_URL: url,
    KEYBRAKE_ALERT_WEBHOOK_SECRET: secret,
    KEYBRAKE_ALERT_RETRY_BASE_MS: '200',
    KEYBRAKE_ALERT_TIMEOUT_MS: '2000',
  };
}

const CALLS = 2000;
const CENTS = 50;
const USD_CAP = 800;
const DAILY_USD_CAP = 1000;
const FRACTIONS = [0.5, 0.8, 1];

/**
 * A 2,000-call fan-out of $0.50 Stripe calls on one key, spread over `urls` (replicas or one port
 * of several workers): the lifetime cap ($800) refuses the last ~400, the daily cap ($1,000) is
 * never reached. Then: every alert the spend calls for arrives, each exactly once after the
 * receiver's de-duplication by id, and none that it does not call for; the key's view agrees.
 */
export async function fanOutAlertsOnce(
  urls: readonly string[],
  admin: AdminClient,
  receiver: Awaited<ReturnType<typeof startAlertReceiver>>,
  what: string,
): Promise<void> {
  const issued = await admin('POST', '/vault/keys', {
    vendor: 'stripe',
    usd_cap: USD_CAP,
    daily_usd_cap: DAILY_USD_CAP,
    allowed_endpoints: ['POST /v1/payment_intents'],
    expires_in: '1h',
    agent_run_label: 'fan-out/issue-26',
    alerts: FRACTIONS.map((at_fraction) => ({ at_fraction })),
  });
  expect(issued.status).toBe(201);
  const key = issued.body as { key_id: string; vault_key: string };
  const dispatcher = new Agent({ connections: 512 });
  onTestFinished(() => dispatcher.destroy());
  const started = performance.now();
  const statuses = await Promise.all(
    Array.from({ length: CALLS }, async (_, i) => {
      const response = await undiciFetch(`${urls[i % urls.length]}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: `amount=${CENTS}&currency=usd`,
        dispatcher,
      });
      await response.arrayBuffer();
      return response.status;
    }),
  );
  const elapsedMs = performance.now() - started;
  const forwarded = statuses.filter((status) => status === 200).length;
  const capHits = statuses.filter((status) => status === 429).length;
  expect(forwarded + capHits).toBe(CALLS);
  expect(capHits).toBeGreaterThan(0);

  const state = (await admin('GET', `/vault/keys/${key.key_id}`)).body;
  expect(state.reserved_usd).toBe(0);
  const expected = [
    ...FRACTIONS.filter((f) => state.spent_usd >= f * USD_CAP).map((f) => `threshold lifetime ${f}`),
    ...FRACTIONS.filter((f) => state.spent_today_usd >= f * DAILY_USD_CAP).map((f) => `threshold daily ${f}`),
    'cap_hit lifetime null',
  ].sort();
  // $800 spent: 50%, 80%, 100% of the lifetime cap; 50% and 80% of the daily one; the cap hit.
  expect(expected).toHaveLength(6);
  await receiver.until(() => receiver.distinct().size >= expected.length, `${expected.length} alerts`);
  // The last one's stragglers (a lapsed lease) would come now.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const distinct = [...receiver.distinct().values()].filter((alert) => alert.key_id === key.key_id);
  const kinds = distinct.map(
    (alert) => `${alert.type.replace('keybrake.alert.', '')} ${alert.cap} ${alert.at_fraction}`,
  );
  expect(kinds.sort()).toEqual(expected);
  expect(receiver.bad).toEqual([]);
  const raw = receiver.raw.filter((alert) => alert.key_id === key.key_id).length;

  // Every replica's view lists each fired alert once, delivered.
  const view = (await admin('GET', `/vault/keys/${key.key_id}`)).body;
  const fired = [...view.alerts.flatMap((a: { fired: unknown[] }) => a.fired), ...view.cap_hit_alerts];
  expect(fired).toHaveLength(expected.length);
  expect(new Set(fired.map((entry: { deliveries: { id: string }[] }) => entry.deliveries[0]?.id))).toEqual(
    new Set(distinct.map((alert) => alert.id)),
  );
  console.log(
    `[figures] issue 26 fan-out, ${what}: ${CALLS} calls in ${elapsedMs.toFixed(0)} ms (${forwarded} forwarded, ` +
      `${capHits} cap hits, $${state.spent_usd} spent): ${distinct.length} distinct alerts, ${raw} raw deliveries, ` +
      `${receiver.answered500()} answered 500`,
  );
}
