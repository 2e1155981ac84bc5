import { randomBytes, randomUUID } from 'node:crypto';
import { describe, inject, it, onTestFinished } from 'vitest';
import { startAlertReceiver } from './alert-receiver.js';
import { adminClient } from './helpers.js';
import { alertEnvironment, fanOutAlertsOnce } from './issue-26-alerts-processes.js';
import { expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

describe('issue 26: alerts across two `keybrake serve` replicas on one Redis', () => {
  it('a 2,000-call fan-out over both replicas delivers each threshold exactly once', async () => {
    const secret = randomBytes(32).toString('hex');
    const receiver = await startAlertReceiver({ secret, failFirst: 3 });
    const environment = serverEnvironment({
      KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
      KEYBRAKE_REDIS_URL: inject('redisUrl'),
      KEYBRAKE_REDIS_PREFIX: `t:${randomUUID()}:`,
      ...alertEnvironment(receiver.url, secret),
    });
    const [a, b] = await Promise.all([spawnServer(environment.env), spawnServer(environment.env)]);
    onTestFinished(async () => {
      for (const server of [a, b]) await stopServer(server);
    });
    await fanOutAlertsOnce(
      [a.url, b.url],
      adminClient(a.url, environment.apiKey),
      receiver,
      'two replicas on one Redis',
    );
    expectNoLeak(a.output() + b.output(), [...Object.values(environment.secrets), secret, receiver.url]);
  });
});
