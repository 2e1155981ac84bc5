import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { describe, expect, it, onTestFinished } from 'vitest';
import { CheckpointSigner } from '../src/audit/checkpoints.js';
import { newSecrets, sendJson, startFakeVendor } from './helpers.js';
import { freePort } from './ports.js';
import { startRedis } from './redis-server.js';
import { CLI } from './server-process.js';

/**
 * The soak: two `keybrake serve` replicas on one real Redis, under a steady mixed load, for
 * `KEYBRAKE_SOAK_SECONDS` (30 in CI; `pnpm soak` runs the full 10 minutes), archiving on (issue 23:
 * a directory sink, a live window of `KEYBRAKE_SOAK_LIVE_SECONDS`). It asserts what must hold
 * however long it runs: no answer other than the intended one, one audit record per request, the
 * chain verifies from genesis through the archive to the live head, spend equals the charges made,
 * and Redis memory (`INFO memory` used_memory, sampled every second) is flat once the live window
 * is full: the slope of the run's second half is under a fifth of what keeping every request would
 * add, measured in the same run before anything could be trimmed. Rate, latency and RSS are reported
 * as figures (each process's RSS after warm-up and at the end, every 5 s in between), not asserted.
 */
const SECONDS = Number(process.env.KEYBRAKE_SOAK_SECONDS ?? 30);
const RATE = Number(process.env.KEYBRAKE_SOAK_RATE ?? 1000);
/** Records younger than this stay in Redis; older ones are archived and trimmed. Regression: issue 23. */
const LIVE_SECONDS = Number(process.env.KEYBRAKE_SOAK_LIVE_SECONDS ?? (SECONDS >= 300 ? 60 : 5));
/**
 * Only the first this many charges carry an Idempotency-Key (replays replay those): a response kept
 * for replay lives the contract's 24 hours, so fresh keys on every charge would grow Redis by design
 * (the README's sizing counts them apart), and the soak measures what issue 23 bounds.
 */
const IDEMPOTENT_CHARGES = 1_000;
/** Memory may grow in the second half by at most this share of what keeping every request adds. */
const FLAT_SHARE = 0.2;
/**
 * Calls in flight at most. Each holds a reservation in Redis: on a machine too busy for the rate,
 * the queue would grow to this cap and its memory with it; the cap is reached within the warm-up,
 * so the second half's slope shows what the archive leaves, not the queue.
 */
const MAX_IN_FLIGHT = Number(process.env.KEYBRAKE_SOAK_MAX_IN_FLIGHT ?? 1000);
/**
 * Busy loops (`sh -c 'while :; do :; done'`) run beside the replicas for the whole soak: a machine
 * starved of CPU, where latency may suffer and correctness may not. Regression: issue 16 (on a
 * loaded machine the soak answered every call and `verify` said ok, with 159 records missing).
 */
const BUSY_LOOPS = Number(process.env.KEYBRAKE_SOAK_BUSY_LOOPS ?? 0);
const ADMIN = 'soak-admin';
/** RSS "start" and steady latency are taken after this. */
const WARM_UP_MS = 10_000;

/** A replica as a real process, its log kept short (a long soak would otherwise fill memory). */
async function startReplica(env: Record<string, string>) {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-soak-'));
  const child = spawn(process.execPath, [CLI, 'serve'], {
    env: {
      PATH: process.env.PATH ?? '',
      KEYBRAKE_HOST: '127.0.0.1',
      KEYBRAKE_PORT: String(port),
      KEYBRAKE_DATA_DIR: dataDir,
      KEYBRAKE_API_KEYS: ADMIN,
      KEYBRAKE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const keep = (chunk: Buffer): void => {
    output.push(chunk.toString());
    if (output.length > 200) output.shift();
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  onTestFinished(() => {
    child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    if (
      await fetch(`${url}/readyz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      break;
    if (i > 300 || child.exitCode !== null) throw new Error(`replica did not start: ${output.join('')}`);
    await sleep(50);
  }
  return { url, pid: child.pid as number, output: () => output.join('') };
}

function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Math.round(Number(match?.[1] ?? 0) / 1024);
}

async function admin(
  url: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  const response = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: response.status, body: await response.json() };
}

/** Copies of a tracked object restored into the scratch Redis to weigh one. */
const WEIGHED_COPIES = 20_000;

/**
 * What one tracked vendor object costs Redis's `used_memory`, or 0 when there are none. `MEMORY
 * USAGE` counts the key and its hash but not the key's entries in the keyspace's and the expiry
 * table's buckets (about 60 bytes more: 168 against 230 by `used_memory` on Redis 7.0), so a sample
 * object of the soak's Redis is DUMPed and RESTOREd, with its TTL, under as many names of the same
 * length into an empty scratch Redis, and weighed by the growth of that Redis's `used_memory`.
 */
async function trackedObjectBytes(redis: Redis): Promise<number> {
  let name: string | undefined;
  let cursor = '0';
  do {
    const [next, found] = await redis.scan(cursor, 'MATCH', '*}:obj:*', 'COUNT', 1000);
    cursor = next;
    name = found[0];
  } while (name === undefined && cursor !== '0');
  if (name === undefined) return 0;
  const [dump, ttl] = await Promise.all([redis.dumpBuffer(name), redis.pttl(name)]);
  if (dump === null) throw new Error(`tracked object ${name} vanished while being weighed`);
  const scratchServer = await startRedis(['--appendonly', 'no']);
  const scratch = new Redis(scratchServer.url);
  try {
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await scratch.info('memory'))?.[1]);
    const before = await usedMemory();
    for (let i = 0; i < WEIGHED_COPIES; i += 1000) {
      const batch = scratch.pipeline();
      for (let j = i; j < i + 1000; j += 1) {
        const copy = `${name.slice(0, -8)}${String(j).padStart(8, '0')}`;
        batch.restore(copy, Math.max(ttl, 60_000), dump);
      }
      await batch.exec();
    }
    return ((await usedMemory()) - before) / WEIGHED_COPIES;
  } finally {
    scratch.disconnect();
    await scratchServer.stop();
  }
}

/** The least-squares slope of points `[x, y]`. */
function slope(points: readonly (readonly [number, number])[]): number {
  const n = points.length;
  const meanX = points.reduce((sum, [x]) => sum + x, 0) / n;
  const meanY = points.reduce((sum, [, y]) => sum + y, 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - meanX) * (y - meanY);
    den += (x - meanX) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** What one request of the mix is, and what it must get back. */
type Kind = 'charge' | 'replay' | 'not_allowed' | 'revoked' | 'capped';

/** The mix, by request number mod 20: 55% new charges, 15% replays, 10% off the allowlist, 5% revoked, 15% at a spent cap. */
function kindOf(n: number): Kind {
  const slot = n % 20;
  if (slot <= 10) return 'charge';
  if (slot <= 13) return 'replay';
  if (slot <= 15) return 'not_allowed';
  if (slot === 16) return 'revoked';
  return 'capped';
}

/** Starts the busy loops; they are killed when the test ends. */
function startBusyLoops(count: number): void {
  for (let i = 0; i < count; i += 1) {
    const loop = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
    onTestFinished(() => {
      loop.kill('SIGKILL');
    });
  }
}

describe(`soak: 2 replicas on Redis, ${RATE} req/s of mixed calls for ${SECONDS} s${BUSY_LOOPS > 0 ? `, beside ${BUSY_LOOPS} busy loops` : ''}`, () => {
  it(
    'answers only as intended, audits every request once, verifies, and reports rate, latency and memory',
    async () => {
      const redis = await startRedis();
      onTestFinished(() => redis.stop());
      let vendorCharges = 0;
      const vendor = await startFakeVendor((_request, response) => {
        vendorCharges += 1;
        sendJson(response, 200, { id: `pi_${vendorCharges}`, object: 'payment_intent', amount: 100, currency: 'usd' });
      });
      const secrets = newSecrets();
      // One archive both replicas write to (the archiver runs on one at a time: a lease in Redis).
      const archiveDir = mkdtempSync(join(tmpdir(), 'keybrake-soak-archive-'));
      onTestFinished(() => rmSync(archiveDir, { recursive: true, force: true }));
      const env = {
        KEYBRAKE_REDIS_URL: redis.url,
        KEYBRAKE_STRIPE_BASE_URL: vendor.url,
        STRIPE_SECRET_KEY: secrets.STRIPE_SECRET_KEY as string,
        // One signing key for both, as the README asks: each verifies the segments the other cut.
        KEYBRAKE_AUDIT_SIGNING_KEY: CheckpointSigner.generatePem(),
        KEYBRAKE_ARCHIVE: `dir:${archiveDir}`,
        KEYBRAKE_AUDIT_LIVE_SECONDS: String(LIVE_SECONDS),
        KEYBRAKE_ARCHIVE_INTERVAL: '1s',
      };
      const replicas = [await startReplica(env), await startReplica(env)];
      const [a] = replicas as [(typeof replicas)[0]];

      const issue = async (fields: Record<string, unknown>) => {
        const issued = await admin(a.url, 'POST', '/vault/keys', {
          vendor: 'stripe',
          allowed_endpoints: ['POST /v1/payment_intents'],
          expires_in: '2h',
          agent_run_label: `soak/${randomUUID()}`,
          ...fields,
        });
        expect(issued.status).toBe(201);
        return issued.body as { key_id: string; vault_key: string };
      };
      const executions = await Promise.all(Array.from({ length: 10 }, () => issue({ usd_cap: 10_000_000 })));
      const capped = await issue({ usd_cap: 5 });
      const revoked = await issue({ usd_cap: 100 });
      expect((await admin(a.url, 'DELETE', `/vault/keys/${revoked.key_id}`)).status).toBe(200);
      const recordsBefore = (await admin(a.url, 'GET', '/audit/verify')).body.records as number;
      startBusyLoops(BUSY_LOOPS);

      const pools = replicas.map((replica) => new Pool(replica.url, { connections: 64 }));
      onTestFinished(async () => {
        await Promise.all(pools.map((pool) => pool.destroy()));
      });
      const done: { vaultKey: string; idempotencyKey: string }[] = [];
      const errors: string[] = [];
      const latenciesMs: number[] = [];
      /** Latencies after the first 10 s (JIT, connection pools and Redis warming up). */
      const steadyLatenciesMs: number[] = [];
      let start = 0;
      let sent = 0;
      let answered = 0;
      let charges = 0;
      let idempotentCharges = 0;
      let cappedCharges = 0;
      let inFlight = 0;
      let maxInFlight = 0;

      const send = async (n: number): Promise<void> => {
        let kind = kindOf(n);
        const replay = kind === 'replay' ? done[(n * 7919) % Math.max(1, done.length)] : undefined;
        if (kind === 'replay' && !replay) kind = 'charge';
        const execution = executions[n % executions.length] as { vault_key: string };
        const vaultKey =
          kind === 'capped'
            ? capped.vault_key
            : kind === 'revoked'
              ? revoked.vault_key
              : (replay?.vaultKey ?? execution.vault_key);
        const idempotent = replay !== undefined || idempotentCharges < IDEMPOTENT_CHARGES;
        if (kind === 'charge' && idempotent) idempotentCharges += 1;
        const idempotencyKey = replay?.idempotencyKey ?? `soak-${n}`;
        const started = performance.now();
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        try {
          const response = await (pools[n % 2] as Pool).request({
            method: 'POST',
            path: kind === 'not_allowed' ? '/stripe/v1/refunds' : '/stripe/v1/payment_intents',
            headers: {
              authorization: `Bearer ${vaultKey}`,
              'content-type': 'application/x-www-form-urlencoded',
              ...(idempotent ? { 'idempotency-key': idempotencyKey } : {}),
            },
            body: kind === 'not_allowed' ? 'payment_intent=pi_1' : 'amount=100&currency=usd',
          });
          const text = await response.body.text();
          latenciesMs.push(performance.now() - started);
          if (started - start >= WARM_UP_MS) steadyLatenciesMs.push(performance.now() - started);
          const code =
            response.statusCode === 200 ? undefined : (JSON.parse(text) as { error: { code: string } }).error.code;
          const replayed = response.headers['idempotent-replayed'] === 'true';
          let expected: boolean;
          if (kind === 'charge') {
            expected = response.statusCode === 200 && !replayed;
            if (expected) {
              charges += 1;
              if (idempotent) done.push({ vaultKey, idempotencyKey });
              if (done.length > 10_000) done.splice(0, 5_000);
            }
          } else if (kind === 'replay') expected = response.statusCode === 200 && replayed;
          else if (kind === 'not_allowed') expected = response.statusCode === 403 && code === 'endpoint_not_allowed';
          else if (kind === 'revoked') expected = response.statusCode === 401 && code === 'vault_key_revoked';
          else {
            // The first five $1 charges fit the $5 cap; every later one is a cap hit.
            if (response.statusCode === 200) cappedCharges += 1;
            expected =
              (response.statusCode === 200 && cappedCharges <= 5) ||
              (response.statusCode === 429 &&
                code === 'cap_exhausted' &&
                response.headers['x-keybrake-cap-hit'] === 'true');
          }
          if (!expected && errors.length < 1000)
            errors.push(`${kind} #${n}: ${response.statusCode} ${text.slice(0, 200)}`);
        } catch (error) {
          if (errors.length < 1000) errors.push(`${kind} #${n}: ${(error as Error).message}`);
        } finally {
          inFlight -= 1;
          answered += 1;
        }
      };

      // Paced evenly: every 5 ms, whatever the rate says is due by now.
      const rss: { at: number; replicas: number[]; redis: number; p99: number }[] = [];
      let windowStart = 0;
      const redisPid = Number((await redis.cli('info', 'server')).match(/process_id:(\d+)/)?.[1]);
      // Redis memory every second, with how many requests were answered by then.
      const redisClient = new Redis(redis.url);
      onTestFinished(() => redisClient.disconnect());
      const memory: { at: number; usedBytes: number; answered: number; inFlight: number; objects: number }[] = [];
      const liveRecords: string[] = [];
      const sampleMemory = async (at: number): Promise<void> => {
        const info = await redisClient.info('memory');
        if (Math.round(at) % 5 === 0) {
          // The archive's own figures, from whichever replica leads it.
          const texts = await Promise.all(
            replicas.map((replica) =>
              fetch(`${replica.url}/metrics`).then(
                (r) => r.text(),
                () => '',
              ),
            ),
          );
          const value = (name: string) =>
            Math.max(...texts.map((text) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? 0)));
          liveRecords.push(
            `${Math.round(at)} live ${value('keybrake_audit_records_live')} archived ${value('keybrake_audit_records_archived')} lag ${value('keybrake_audit_archive_lag_seconds')}s`,
          );
        }
        memory.push({
          at,
          usedBytes: Number(/used_memory:(\d+)/.exec(info)?.[1]),
          answered,
          inFlight,
          objects: charges + cappedCharges,
        });
      };
      const sample = (at: number) => {
        const window = latenciesMs.slice(windowStart).sort((x, y) => x - y);
        windowStart = latenciesMs.length;
        const p99 = Math.round(window[Math.floor(0.99 * (window.length - 1))] ?? 0);
        rss.push({ at, replicas: replicas.map((replica) => rssMb(replica.pid)), redis: rssMb(redisPid), p99 });
      };
      // Declared before `send` runs: it reads the start to tell warm-up from steady state.
      start = performance.now();
      sample(0);
      await sampleMemory(0);
      let nextSample = 5_000;
      let nextMemorySample = 1_000;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const elapsed = performance.now() - start;
          if (elapsed >= SECONDS * 1000) {
            clearInterval(timer);
            resolve();
            return;
          }
          const due = Math.floor((elapsed * RATE) / 1000) - sent;
          for (let i = 0; i < due && inFlight < MAX_IN_FLIGHT; i += 1) void send((sent += 1));
          if (elapsed >= nextSample) {
            sample(Math.round(elapsed / 1000));
            nextSample += 5_000;
          }
          if (elapsed >= nextMemorySample) {
            void sampleMemory(elapsed / 1000);
            nextMemorySample += 1_000;
          }
        }, 5);
      });
      const sendingSeconds = (performance.now() - start) / 1000;
      while (answered < sent) await sleep(20);
      sample(Math.round((performance.now() - start) / 1000));

      // The audit log: every request once, the chain whole, spend equal to the charges made.
      const verified = (await admin(a.url, 'GET', '/audit/verify')).body;
      const spent = await Promise.all(
        executions.map(
          async (execution) => (await admin(a.url, 'GET', `/vault/keys/${execution.key_id}`)).body.spent_usd as number,
        ),
      );
      const quantile = (values: number[], q: number) => {
        values.sort((x, y) => x - y);
        return Math.round((values[Math.floor(q * (values.length - 1))] ?? 0) * 100) / 100;
      };
      // Issue 23: what keeping every request costs, from the growth before anything could be trimmed
      // (the first live window), and the slope once the live window is full (the second half).
      memory.sort((x, y) => x.at - y.at);
      // Every new charge leaves its PaymentIntent tracked for 8 days (a later capture or refund is
      // settled against its key: issue 20), kept by design like the idempotent responses above, so
      // its bytes (one object, weighed in a scratch Redis) come off every sample: the slope
      // is then what the archive and its trim leave. On a loaded machine those objects alone grew
      // about 200 KB/s, near the bound, and the short soak failed on them, not on the audit.
      const objectBytes = await trackedObjectBytes(redisClient);
      const kept = (m: { usedBytes: number; objects: number }) => m.usedBytes - m.objects * objectBytes;
      const before = memory.filter((m) => m.at >= 1 && m.at <= LIVE_SECONDS - 1);
      const grown =
        kept(before.at(-1) ?? { usedBytes: 0, objects: 0 }) - kept(before[0] ?? { usedBytes: 0, objects: 0 });
      const answeredMeanwhile = (before.at(-1)?.answered ?? 0) - (before[0]?.answered ?? 0);
      const bytesPerRequest = answeredMeanwhile > 0 ? grown / answeredMeanwhile : 0;
      const steady = memory.filter((m) => m.at >= Math.max(SECONDS / 2, LIVE_SECONDS + 5));
      const slopeBytesPerSecond = slope(steady.map((m) => [m.at, kept(m)]));
      const boundBytesPerSecond = FLAT_SHARE * bytesPerRequest * (sent / sendingSeconds);
      const mb = (bytes: number) => Math.round(bytes / 1e5) / 10;
      const early = rss.find((s) => s.at * 1000 >= WARM_UP_MS) ?? rss[0];
      const last = rss.at(-1);
      const figures = {
        busyLoops: BUSY_LOOPS,
        seconds: Math.round(sendingSeconds),
        requests: sent,
        achievedRate: Math.round(sent / sendingSeconds),
        maxInFlight,
        latencyMs: {
          p50: quantile(latenciesMs, 0.5),
          p99: quantile(latenciesMs, 0.99),
          max: quantile(latenciesMs, 1),
          afterWarmUp: { p50: quantile(steadyLatenciesMs, 0.5), p99: quantile(steadyLatenciesMs, 0.99) },
        },
        auditRecords: verified.records - recordsBefore,
        charges,
        vendorCharges,
        errors: errors.length,
        rssMb: {
          replicas: replicas.map((_, i) => `${early?.replicas[i]} -> ${last?.replicas[i]}`),
          redis: `${early?.redis} -> ${last?.redis}`,
        },
        archive: {
          liveSeconds: LIVE_SECONDS,
          archivedRecords: verified.archived_records,
          segments: verified.segments,
        },
        redisUsedMemoryMb: {
          start: mb(memory[0]?.usedBytes ?? 0),
          atLiveWindow: mb(before.at(-1)?.usedBytes ?? 0),
          secondHalfMin: mb(Math.min(...steady.map((m) => m.usedBytes))),
          secondHalfMax: mb(Math.max(...steady.map((m) => m.usedBytes))),
          end: mb(memory.at(-1)?.usedBytes ?? 0),
        },
        bytesPerRequestBeforeTrim: Math.round(bytesPerRequest),
        trackedObjectBytes: Math.round(objectBytes),
        secondHalfSlopeKbPerSecond: Math.round(slopeBytesPerSecond / 100) / 10,
        flatBoundKbPerSecond: Math.round(boundBytesPerSecond / 100) / 10,
      };
      console.info('soak figures:', JSON.stringify(figures, null, 2));
      console.info(
        'every 5 s (s, replica RSS MB..., redis RSS MB, p99 ms of the window):',
        rss.map((s) => [s.at, ...s.replicas, s.redis, s.p99].join(' ')).join(' | '),
      );
      console.info('archive every 5 s:', liveRecords.join(' | '));
      console.info(
        'redis used_memory MB (calls in flight) every 5 s:',
        memory
          .filter((_, i) => i % 5 === 0)
          .map((m) => `${Math.round(m.at)} ${mb(m.usedBytes)} (${m.inFlight})`)
          .join(' | '),
      );

      console.info('audit verify:', JSON.stringify(verified));
      if (verified.ok !== true) console.info('replica log tail:', a.output().slice(-6000));
      // Archive failures each replica logged (a round that failed is retried; they are figures).
      const archiveErrors = replicas.flatMap((replica) =>
        replica
          .output()
          .split('\n')
          .filter((line) => line.includes('audit archive:')),
      );
      console.info(`archive errors logged: ${archiveErrors.length}`, archiveErrors.slice(-5).join('\n'));
      expect(errors.slice(0, 10)).toEqual([]);
      expect(verified).toMatchObject({ ok: true });
      // Issue 23: records were archived and trimmed, and Redis memory stopped growing with them.
      expect(verified.archived_records).toBeGreaterThan(0);
      expect(bytesPerRequest).toBeGreaterThan(0);
      expect(steady.length).toBeGreaterThanOrEqual(5);
      expect(slopeBytesPerSecond).toBeLessThan(boundBytesPerSecond);
      expect(verified.records - recordsBefore).toBe(sent);
      expect(cappedCharges).toBe(5);
      expect(vendorCharges).toBe(charges + cappedCharges);
      expect(spent.reduce((x, y) => x + y, 0)).toBe(charges);
      for (const replica of replicas) {
        for (const secret of [secrets.STRIPE_SECRET_KEY as string, ...executions.map((e) => e.vault_key)]) {
          expect(replica.output().includes(secret), 'a replica log leaks a secret').toBe(false);
        }
      }
    },
    (SECONDS + 180) * 1000,
  );
});
