import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent, fetch as undiciFetch } from 'undici';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { startRelay } from './counting-relay.js';
import { adminClient, issueStripeKey } from './helpers.js';
import { CLI, expectNoLeak, serverEnvironment, spawnServer, type ServerProcess, stopServer } from './server-process.js';

const WORKERS = 2;

/** `keybrake serve --workers 2` on one embedded data directory, in front of stripe-mock through a counting relay. */
async function startWorkers(extraEnv: Record<string, string> = {}) {
  const relay = await startRelay(inject('stripeMockUrl'));
  const environment = serverEnvironment({ KEYBRAKE_STRIPE_BASE_URL: relay.url, ...extraEnv });
  const server = await spawnServer(environment.env, {
    command: [process.execPath, CLI, 'serve', '--workers', String(WORKERS)],
  });
  onTestFinished(async () => {
    await stopServer(server);
    expectNoLeak(server.output(), Object.values(environment.secrets));
  });
  await untilListening(server, WORKERS);
  return { ...environment, relay, server, admin: adminClient(server.url, environment.apiKey) };
}

/** Waits until the primary has said `worker listening` `count` times; the pids it named. */
async function untilListening(server: ServerProcess, count: number): Promise<number[]> {
  for (;;) {
    const pids = server
      .output()
      .split('\n')
      .filter((line) => line.includes('"msg":"worker listening"'))
      .map((line) => (JSON.parse(line) as { workerPid: number }).workerPid);
    if (pids.length >= count) return pids;
    if (server.child.exitCode !== null) throw new Error(`keybrake serve exited:\n${server.output()}`);
    await sleep(20);
  }
}

/** The worker pids that logged a completed request for `url` (every worker logs at `info`). */
function pidsThatServed(server: ServerProcess, url: string): Set<number> {
  const requests = new Map<string, number>();
  const pids = new Set<number>();
  for (const line of server.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { pid: number; reqId?: string; req?: { url: string }; msg: string };
    if (entry.req?.url === url && entry.reqId) requests.set(`${entry.pid}/${entry.reqId}`, entry.pid);
    if (entry.msg === 'request completed' && requests.has(`${entry.pid}/${entry.reqId}`)) pids.add(entry.pid);
  }
  return pids;
}

/** One request on a connection of its own: the cluster hands each new connection to the next worker. */
async function onNewConnection(url: string, init: { method: string; headers: Record<string, string>; body?: string }) {
  const agent = new Agent({ connections: 1 });
  try {
    const response = await undiciFetch(url, { ...init, dispatcher: agent });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  } finally {
    await agent.close();
  }
}

function charge(server: ServerProcess, vaultKey: string, amount: number, headers: Record<string, string> = {}) {
  return onNewConnection(`${server.url}/stripe/v1/payment_intents`, {
    method: 'POST',
    headers: { authorization: `Bearer ${vaultKey}`, 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: `amount=${amount}&currency=usd`,
  });
}

/** $1.00 to $5.00 in whole cents, deterministic per call. */
const amountOf = (i: number) => 100 + ((i * 7919) % 401);

describe('issue 21: keybrake serve --workers (several processes on one embedded data directory, stripe-mock)', () => {
  it('a cap race over the workers overshoots by $0 and leaves one unbroken audit chain', async () => {
    const { server, admin, relay } = await startWorkers();
    const capUsd = 100;
    const key = await issueStripeKey(admin, capUsd);
    const calls = 400;
    const agent = new Agent({ connections: 64 });
    onTestFinished(() => agent.close());
    const results = await Promise.all(
      Array.from({ length: calls }, async (_, i) => {
        const response = await undiciFetch(`${server.url}/stripe/v1/payment_intents`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: `amount=${amountOf(i)}&currency=usd`,
          dispatcher: agent,
        });
        return { i, status: response.status, body: (await response.json()) as any };
      }),
    );
    // Both workers took part in the race, or it proves nothing about several processes.
    expect(pidsThatServed(server, '/stripe/v1/payment_intents').size).toBe(WORKERS);
    const forwarded = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(forwarded.length + refused.length).toBe(calls);
    expect(refused.every((r) => r.body.error.code === 'cap_exhausted')).toBe(true);
    expect(relay.forwarded('POST /v1/payment_intents')).toBe(forwarded.length);
    const chargedCents = forwarded.reduce((sum, r) => sum + amountOf(r.i), 0);
    expect(chargedCents).toBeLessThanOrEqual(capUsd * 100);
    expect(capUsd * 100 - chargedCents).toBeLessThan(Math.min(...refused.map((r) => amountOf(r.i))));

    const state = (await admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBeCloseTo(chargedCents / 100, 6);
    expect(state.reserved_usd).toBe(0);
    expect((await admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: calls });
  });

  it('a revocation answered by one worker is in force on every worker at once', async () => {
    const { server, admin } = await startWorkers();
    const key = await issueStripeKey(admin, 1000);
    // Every worker has served (and so may hold state about) the key before the revocation.
    for (let i = 0; i < 4 * WORKERS; i += 1) expect((await charge(server, key.vault_key, 100)).status).toBe(200);
    expect(pidsThatServed(server, '/stripe/v1/payment_intents').size).toBe(WORKERS);
    expect((await admin('DELETE', `/vault/keys/${key.key_id}`)).status).toBe(200);
    const after = await Promise.all(Array.from({ length: 4 * WORKERS }, () => charge(server, key.vault_key, 100)));
    expect(after.map((r) => [r.status, r.body.error?.code])).toEqual(after.map(() => [401, 'vault_key_revoked']));
  });

  it('an idempotent replay is answered by any worker without calling the vendor again', async () => {
    const { server, admin, relay } = await startWorkers();
    const key = await issueStripeKey(admin, 1000);
    const headers = { 'idempotency-key': `replay-${key.key_id}` };
    const first = await charge(server, key.vault_key, 250, headers);
    expect(first.status).toBe(200);
    const replays = [];
    for (let i = 0; i < 4 * WORKERS; i += 1) replays.push(await charge(server, key.vault_key, 250, headers));
    expect(pidsThatServed(server, '/stripe/v1/payment_intents').size).toBe(WORKERS);
    for (const replay of replays) {
      expect(replay.status).toBe(200);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.body.id).toBe(first.body.id);
    }
    expect(relay.forwarded('POST /v1/payment_intents')).toBe(1);
    expect((await admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(2.5, 6);
  });

  it('a crashed worker is replaced while the others keep serving; SIGTERM drains every worker and exits 0', async () => {
    const { server, admin } = await startWorkers();
    const key = await issueStripeKey(admin, 1000);
    for (let i = 0; i < 2 * WORKERS; i += 1) expect((await charge(server, key.vault_key, 100)).status).toBe(200);
    const [victim, survivor] = await untilListening(server, WORKERS);
    process.kill(victim!, 'SIGKILL');
    const replacement = (await untilListening(server, WORKERS + 1))[WORKERS]!;
    expect([victim, survivor]).not.toContain(replacement);
    // The survivor was not restarted: it kept its process (and its connections) throughout.
    expect(() => process.kill(survivor!, 0)).not.toThrow();
    for (let i = 0; i < 4 * WORKERS; i += 1) expect((await charge(server, key.vault_key, 100)).status).toBe(200);
    expect(pidsThatServed(server, '/stripe/v1/payment_intents')).toContain(replacement);
    expect((await admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({ spent_usd: 12, reserved_usd: 0 });
    expect((await admin('GET', '/audit/verify')).body).toMatchObject({ ok: true, records: 6 * WORKERS });

    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    for (const pid of [survivor!, replacement]) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('serve --workers takes a positive whole number (exit 2 with the reason otherwise)', () => {
    const { env } = serverEnvironment();
    for (const workers of ['0', 'two', '1.5']) {
      const result = spawnSync(process.execPath, [CLI, 'serve', '--workers', workers], { env, encoding: 'utf8' });
      expect([result.status, result.stderr]).toEqual([
        2,
        expect.stringContaining('KEYBRAKE_WORKERS must be a positive integer'),
      ]);
    }
    const unknown = spawnSync(process.execPath, [CLI, 'serve', '--worker', '2'], { env, encoding: 'utf8' });
    expect(unknown.status).toBe(2);
  });
});
