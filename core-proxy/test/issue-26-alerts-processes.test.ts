import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { startAlertReceiver } from './alert-receiver.js';
import { adminClient } from './helpers.js';
import { alertEnvironment, fanOutAlertsOnce } from './issue-26-alerts-processes.js';
import { CLI, expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

describe('issue 26: alerts across `keybrake serve` processes (embedded store)', () => {
  it('a 2,000-call fan-out on `serve --workers 2` delivers each threshold exactly once', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret, failFirst: 3 });
    const environment = serverEnvironment({
      KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
      ...alertEnvironment(receiver.url, secret),
    });
    const server = await spawnServer(environment.env, { command: [process.execPath, CLI, 'serve', '--workers', '2'] });
    onTestFinished(() => stopServer(server));
    // Both workers listen before the fan-out, so both settle (and fire) calls.
    while ((server.output().match(/"msg":"worker listening"/g) ?? []).length < 2) await sleep(20);
    await fanOutAlertsOnce([server.url], adminClient(server.url, environment.apiKey), receiver, 'serve --workers 2');
    await stopServer(server);
    expectNoLeak(server.output(), [...Object.values(environment.secrets), secret, receiver.url]);
  });

  it('alerts pending when the proxy is killed with -9 arrive after it restarts', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret });
    // The receiver is down: the alerts wait in the outbox.
    await receiver.stop();
    const environment = serverEnvironment({
      KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
      ...alertEnvironment(receiver.url, secret),
    });
    const first = await spawnServer(environment.env);
    onTestFinished(() => stopServer(first));
    const admin = adminClient(first.url, environment.apiKey);
    const issued = await admin('POST', '/vault/keys', {
      vendor: 'stripe',
      usd_cap: 2,
      allowed_endpoints: ['POST /v1/payment_intents'],
      expires_in: '1h',
      alerts: [{ at_fraction: 0.5 }, { at_fraction: 1 }],
    });
    expect(issued.status).toBe(201);
    const charge = (url: string) =>
      fetch(`${url}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${issued.body.vault_key}`,
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: 'amount=100&currency=usd',
      });
    expect((await charge(first.url)).status).toBe(200);
    expect((await charge(first.url)).status).toBe(200);
    expect((await charge(first.url)).status).toBe(429);
    // Wait until the sender has tried (and failed) each of the three at least once.
    for (;;) {
      const view = (await admin('GET', `/vault/keys/${issued.body.key_id}`)).body;
      const fired = [...view.alerts.flatMap((a: { fired: unknown[] }) => a.fired), ...view.cap_hit_alerts];
      if (fired.length === 3 && fired.every((entry) => entry.deliveries[0].attempts >= 1)) {
        for (const entry of fired) expect(entry.deliveries[0]).toMatchObject({ state: 'pending', last_status: null });
        break;
      }
      await sleep(100);
    }
    first.child.kill('SIGKILL');
    await first.exited;

    await receiver.start();
    const second = await spawnServer(environment.env);
    onTestFinished(() => stopServer(second));
    await receiver.until(() => receiver.distinct().size >= 3, 'the three alerts after the restart');
    const kinds = [...receiver.distinct().values()].map((alert) => `${alert.type} ${alert.at_fraction}`);
    expect(kinds.sort()).toEqual([
      'keybrake.alert.cap_hit null',
      'keybrake.alert.threshold 0.5',
      'keybrake.alert.threshold 1',
    ]);
    expect(receiver.bad).toEqual([]);
    await stopServer(second);
    expectNoLeak(first.output() + second.output(), [
      ...Object.values(environment.secrets),
      secret,
      issued.body.vault_key,
    ]);
  });
});
