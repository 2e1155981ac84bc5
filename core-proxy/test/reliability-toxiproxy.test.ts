import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it, onTestFinished } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge } from './helpers.js';
import { freePort } from './ports.js';
import { startRedis } from './redis-server.js';

/** toxiproxy-server (Shopify's TCP fault injector, from the Go module proxy) with one proxy in front of `upstream`. */
async function startToxiproxy(
  upstream: string,
): Promise<{ listen: string; toxic(body: object): Promise<void>; clear(): Promise<void> }> {
  const binary = process.env.TOXIPROXY_BIN;
  if (!binary) throw new Error('TOXIPROXY_BIN is not set: run the tests with `pnpm test` (it installs toxiproxy).');
  const apiPort = await freePort();
  const child: ChildProcess = spawn(binary, ['-host', '127.0.0.1', '-port', String(apiPort)], { stdio: 'ignore' });
  onTestFinished(() => {
    child.kill('SIGKILL');
  });
  const api = `http://127.0.0.1:${apiPort}`;
  for (let attempt = 0; ; attempt += 1) {
    if (
      await fetch(`${api}/version`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (attempt > 100) throw new Error('toxiproxy did not start');
    await sleep(50);
  }
  const listen = `127.0.0.1:${await freePort()}`;
  const created = await fetch(`${api}/proxies`, {
    method: 'POST',
    body: JSON.stringify({ name: 'redis', listen, upstream, enabled: true }),
  });
  expect(created.status).toBe(201);
  const toxics: string[] = [];
  return {
    listen,
    toxic: async (body) => {
      const name = `t${toxics.length}`;
      const response = await fetch(`${api}/proxies/redis/toxics`, {
        method: 'POST',
        body: JSON.stringify({ name, ...body }),
      });
      expect(response.ok, await response.text()).toBe(true);
      toxics.push(name);
    },
    clear: async () => {
      for (const name of toxics.splice(0)) await fetch(`${api}/proxies/redis/toxics/${name}`, { method: 'DELETE' });
    },
  };
}

describe('Redis faults injected with toxiproxy under load (real redis-server, fake vendor)', () => {
  it('slow and resetting Redis connections: calls fail closed with 503, every call that reached the vendor is counted, and service recovers alone', async () => {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    const toxiproxy = await startToxiproxy(`127.0.0.1:${redis.port}`);
    const vendor = await startFakeVendor((request, response) =>
      sendJson(response, 200, { id: `pi_${randomUUID()}`, amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({
      store: 'redis',
      redisUrl: `redis://${toxiproxy.listen}`,
      // Generous enough for a busy CI machine, far below the injected latency.
      redisTimeoutMs: 800,
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url },
    });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1_000_000,
      allowed_endpoints: ['POST /v1/payment_intents'],
    });

    type Phase = 'before' | 'slow' | 'reset' | 'after';
    let phase: Phase = 'before';
    let stop = false;
    const calls: { phase: Phase; status: number; code?: string; message?: string; id: string }[] = [];
    const load = Array.from({ length: 8 }, async () => {
      while (!stop) {
        const id = randomUUID();
        const started = phase;
        const response = await stripeCharge(proxy, key.vault_key, 100, { 'x-test-call': id });
        const body = await json(response);
        calls.push({
          phase: started,
          status: response.status,
          code: body.error?.code,
          message: body.error?.message,
          id,
        });
      }
    });
    await sleep(500);
    phase = 'slow';
    await toxiproxy.toxic({ type: 'latency', stream: 'downstream', attributes: { latency: 3000 } });
    await sleep(2000);
    await toxiproxy.clear();
    phase = 'reset';
    await toxiproxy.toxic({ type: 'reset_peer', stream: 'downstream', attributes: { timeout: 0 } });
    await sleep(1000);
    await toxiproxy.clear();
    phase = 'after';
    await sleep(2500);
    stop = true;
    await Promise.all(load);

    const count = (p: Phase, status?: number) =>
      calls.filter((c) => c.phase === p && (status === undefined || c.status === status)).length;
    // Only the two outcomes a caller can act on: it went through, or the store could not be reached.
    expect(new Set(calls.map((c) => c.status))).toEqual(new Set([200, 503]));
    expect(calls.filter((c) => c.status === 503).every((c) => c.code === 'store_unavailable')).toBe(true);
    expect(count('slow', 503)).toBeGreaterThan(0);
    expect(count('reset', 503)).toBeGreaterThan(0);
    // Recovery without a restart: the last second of the run is all 200.
    const tail = calls.filter((c) => c.phase === 'after').slice(-10);
    expect(tail.length).toBeGreaterThan(0);
    expect(tail.every((c) => c.status === 200)).toBe(true);

    // Money: every call the vendor received is counted as spent or still reserved (a settle that
    // timed out after forwarding keeps its reservation, to be swept as unknown spend).
    const received = new Set(vendor.received.map((r) => String(r.headers['x-test-call'])));
    const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body as {
      spent_usd: number;
      reserved_usd: number;
    };
    expect(state.spent_usd + state.reserved_usd).toBeGreaterThanOrEqual(received.size);
    // Every 200 was forwarded; a 503 before forwarding reached no vendor.
    expect(calls.filter((c) => c.status === 200).every((c) => received.has(c.id))).toBe(true);
    // A 503 says whether the vendor was called: "nothing was forwarded" only when it was not.
    const notForwarded = calls.filter((c) => c.status === 503 && !received.has(c.id));
    const forwardedThen503 = calls.filter((c) => c.status === 503 && received.has(c.id));
    expect(notForwarded.every((c) => /nothing was forwarded/.test(c.message ?? ''))).toBe(true);
    expect(forwardedThen503.filter((c) => !/vendor was called/.test(c.message ?? '')).map((c) => c.message)).toEqual(
      [],
    );
    // Verify reads the whole chain; on a busy machine one attempt may outlast the command timeout.
    let verified = await proxy.admin('GET', '/audit/verify');
    for (let attempt = 0; attempt < 10 && verified.status === 503; attempt += 1) {
      await sleep(200);
      verified = await proxy.admin('GET', '/audit/verify');
    }
    expect(verified.body.ok, JSON.stringify(verified.body)).toBe(true);
    console.info(
      `[figures] toxiproxy on Redis: ${calls.length} calls; slow (3 s latency, 800 ms timeout): ${count('slow', 503)} of ${count('slow')} got 503; resets: ${count('reset', 503)} of ${count('reset')} got 503; ${notForwarded.length} 503s reached no vendor, ${forwardedThen503.length} were forwarded before the store failed (kept reserved); after: ${count('after', 200)} of ${count('after')} 200; spent+reserved $${(state.spent_usd + state.reserved_usd).toFixed(2)} for ${received.size} calls the vendor received`,
    );
  });
});
