import { randomUUID } from 'node:crypto';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { openFeed } from './event-stream.js';
import { adminClient } from './helpers.js';
import { expectFeedSeesAnother } from './issue-22-events-processes.js';
import { expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

describe('issue 22: GET /events across two `keybrake serve` replicas on one Redis', () => {
  it('a subscriber on one replica sees the calls and revocations made through the other, and SIGTERM ends its stream', async () => {
    const environment = serverEnvironment({
      KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
      KEYBRAKE_REDIS_URL: inject('redisUrl'),
      KEYBRAKE_REDIS_PREFIX: `t:${randomUUID()}:`,
    });
    const [a, b] = await Promise.all([spawnServer(environment.env), spawnServer(environment.env)]);
    onTestFinished(async () => {
      for (const server of [a, b]) await stopServer(server);
    });
    const feed = await openFeed(a.url, environment.apiKey);
    expect(feed.status).toBe(200);
    // Issued, charged, revoked and refused through replica b only.
    await expectFeedSeesAnother(feed, b.url, adminClient(b.url, environment.apiKey));
    expect(a.output()).not.toContain('/stripe/v1/payment_intents');

    a.child.kill('SIGTERM');
    await feed.ended;
    expect(await a.exited).toBe(0);
    expectNoLeak(feed.raw() + a.output() + b.output(), Object.values(environment.secrets));
    expect(feed.raw()).not.toMatch(/kb_vk_/);
  });
});
