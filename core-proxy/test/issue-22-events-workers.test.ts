import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { openFeed } from './event-stream.js';
import { adminClient } from './helpers.js';
import { expectFeedSeesAnother, untilLogged } from './issue-22-events-processes.js';
import { CLI, expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

describe('issue 22: GET /events across `keybrake serve --workers 2` on one data directory', () => {
  it('a subscriber sees the calls and revocations every worker serves, and SIGTERM ends its stream', async () => {
    const environment = serverEnvironment({ KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl') });
    const server = await spawnServer(environment.env, { command: [process.execPath, CLI, 'serve', '--workers', '2'] });
    onTestFinished(async () => {
      await stopServer(server);
    });
    await untilLogged(server.output, /"msg":"worker listening"/, 2);
    const admin = adminClient(server.url, environment.apiKey);
    const feed = await openFeed(server.url, environment.apiKey);
    expect(feed.status).toBe(200);
    // Each charge on a connection of its own: the workers take turns, so both serve some.
    await expectFeedSeesAnother(feed, server.url, admin);
    const pids = new Set(
      server
        .output()
        .split('\n')
        .filter((line) => line.includes('"url":"/stripe/v1/payment_intents"'))
        .map((line) => (JSON.parse(line) as { pid: number }).pid),
    );
    expect(pids.size, 'both workers served charges').toBe(2);

    server.child.kill('SIGTERM');
    await feed.ended;
    expect(await server.exited).toBe(0);
    expectNoLeak(feed.raw() + server.output(), Object.values(environment.secrets));
    expect(feed.raw()).not.toMatch(/kb_vk_/);
  });
});
