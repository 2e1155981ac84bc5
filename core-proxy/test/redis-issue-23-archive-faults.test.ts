import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, inject, it, vi } from 'vitest';
import { parseSegmentName } from '../src/archive/segment.js';
import { S3Sink } from '../src/archive/s3-sink.js';
import { parseArchiveTarget } from '../src/archive/archive-config.js';
import { RedisStore } from '../src/store/redis/redis-store.js';
import { SqliteStore } from '../src/store/sqlite-store.js';
import type { ArchiveState, Store } from '../src/store/store.js';
import { type MotoServer, startMotoServer } from './moto-server.js';
import { type ServerProcess, expectNoLeak, serverEnvironment, spawnServer, stopServer } from './server-process.js';

/**
 * Issue 23, fault tests with real parts on both stores: `keybrake serve` processes archiving to
 * moto_server's S3 API, over the real SQLite file or a real Redis.
 * - the sink hangs (moto_server stopped with SIGSTOP), then answers again;
 * - the proxy is killed (SIGKILL) while its segment upload sits unanswered in moto's socket, and
 *   moto stores it after the proxy is gone: the restarted proxy adopts it;
 * - two replicas (two processes of one store) race for the lease.
 * In every case: no gap, no duplicate or overlapping segment, and no record leaves the live store
 * before its segment is in the sink.
 */

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.unstubAllEnvs();
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

interface Deployment {
  readonly env: Record<string, string>;
  readonly apiKey: string;
  readonly secrets: string[];
  /** The store the servers share, opened by the test beside them. */
  store(): Promise<Store>;
}

const STORES = ['embedded', 'redis'] as const;

async function deployment(
  kind: (typeof STORES)[number],
  moto: MotoServer,
  extra: Record<string, string> = {},
): Promise<Deployment> {
  const prefix = `t:${randomUUID()}:`;
  const environment = serverEnvironment({
    ...moto.env(`run-${randomUUID().slice(0, 8)}`),
    KEYBRAKE_AUDIT_LIVE_RECORDS: '5',
    KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: '8',
    KEYBRAKE_ARCHIVE_INTERVAL: '100ms',
    KEYBRAKE_ARCHIVE_S3_TIMEOUT: '1s',
    KEYBRAKE_LOG_LEVEL: 'info',
    ...(kind === 'redis' ? { KEYBRAKE_REDIS_URL: inject('redisUrl'), KEYBRAKE_REDIS_PREFIX: prefix } : {}),
    ...extra,
  });
  let opened: Store | undefined;
  return {
    env: environment.env,
    apiKey: environment.apiKey,
    secrets: Object.values(environment.secrets),
    store: async () => {
      if (opened) return opened;
      const store: Store =
        kind === 'redis'
          ? new RedisStore({ url: inject('redisUrl'), prefix })
          : new SqliteStore({ dataDir: environment.dataDir });
      opened = store;
      cleanups.push(() => store.close());
      return store;
    },
  };
}

async function serve(env: Record<string, string>): Promise<ServerProcess> {
  const server = await spawnServer(env);
  cleanups.push(() => stopServer(server, 'SIGKILL'));
  return server;
}

/** `n` calls that the proxy refuses and audits (no vault key). */
async function calls(server: ServerProcess, n: number): Promise<void> {
  for (let i = 0; i < n; i += 1) {
    const response = await fetch(`${server.url}/stripe/v1/payment_intents`, { method: 'POST', body: 'amount=1' });
    expect(response.status).toBe(401);
    await response.arrayBuffer();
  }
}

function sinkOf(deploy: Deployment): S3Sink {
  // The SDK reads its credentials from the process environment (moto's fake ones).
  vi.stubEnv('AWS_ACCESS_KEY_ID', deploy.env.AWS_ACCESS_KEY_ID);
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', deploy.env.AWS_SECRET_ACCESS_KEY);
  const target = parseArchiveTarget(deploy.env.KEYBRAKE_ARCHIVE as string, deploy.env);
  if (target.kind !== 's3') throw new Error('not s3');
  const sink = new S3Sink(target, { requestTimeoutMs: 5000 });
  cleanups.push(() => sink.close());
  return sink;
}

async function until<T>(
  what: string,
  read: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(value)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The sink's segments tile 1..N: no gap, no overlap, no duplicate. Returns N. */
async function expectTiled(sink: S3Sink): Promise<number> {
  const ranges = (await sink.list()).map((name) => parseSegmentName(name) as { firstSeq: number; lastSeq: number });
  let next = 1;
  for (const range of ranges) {
    expect(range.firstSeq, JSON.stringify(ranges)).toBe(next);
    next = range.lastSeq + 1;
  }
  return next - 1;
}

async function verify(server: ServerProcess, apiKey: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}/audit/verify`, { headers: { authorization: `Bearer ${apiKey}` } });
  return (await response.json()) as Record<string, unknown>;
}

/** Live records the store holds: what `readAudit` returns from the start. */
async function liveSeqs(store: Store): Promise<number[]> {
  const seqs: number[] = [];
  for (let after = 0; ;) {
    const page = await store.readAudit(after, 1000);
    if (page.length === 0) return seqs;
    seqs.push(...page.map((entry) => entry.seq));
    after = page[page.length - 1]?.seq as number;
  }
}

/** Bytes waiting in moto's receive queues: a request it has not read (it is stopped). */
function motoRecvQueue(moto: MotoServer): number {
  const port = new URL(moto.url).port;
  const out = execFileSync('ss', ['-tnH', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8' });
  return out
    .split('\n')
    .filter(Boolean)
    .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0] ?? 0), 0);
}

describe.each(STORES)('issue 23: archive faults with real parts (%s store)', (kind) => {
  it('pauses while the sink hangs, keeps every record live meanwhile, and resumes by itself', async () => {
    const moto = await startMotoServer();
    cleanups.push(() => moto.stop());
    const deploy = await deployment(kind, moto);
    const server = await serve(deploy.env);
    const store = await deploy.store();
    const sink = sinkOf(deploy);
    await calls(server, 30);
    await until(
      'a first archive',
      () => store.archiveState(),
      (state) => state.archivedThrough >= 16,
    );

    moto.pause();
    let paused = true;
    cleanups.push(async () => {
      if (paused) moto.resume();
    });
    // Whatever round was in flight ends (its request times out); then nothing moves.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const before = await store.archiveState();
    await calls(server, 30);
    const head = await store.completeAuditHead();
    await until(
      'an archive error counted',
      async () =>
        (await (await fetch(`${server.url}/metrics`)).text()).match(
          /keybrake_audit_archive_errors_total\{reason="sink_unavailable"\} (\d+)/,
        )?.[1],
      (count) => Number(count ?? 0) > 0,
    );
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const during = await store.archiveState();
    expect(during.archivedThrough).toBe(before.archivedThrough);
    expect(during.trimmedThrough).toBe(before.trimmedThrough);
    // Every record past the archive is still live.
    const live = await liveSeqs(store);
    expect(live[0]).toBe(during.trimmedThrough + 1);
    expect(live.at(-1)).toBeGreaterThanOrEqual(head.records);

    moto.resume();
    paused = false;
    // A round records its segment, then trims: the trim may be a step behind when this looks.
    const after = await until(
      'archiving to resume and the trim to follow',
      () => store.archiveState(),
      (state) => state.archivedThrough >= head.records - 8 && state.trimmedThrough === state.archivedThrough,
    );
    expect(await expectTiled(sink)).toBeGreaterThanOrEqual(after.archivedThrough);
    expect(await verify(server, deploy.apiKey)).toMatchObject({ ok: true });
    const metrics = await (await fetch(`${server.url}/metrics`)).text();
    expect(metrics).toMatch(/keybrake_audit_archive_segments_total \d+/);
    expect(metrics).not.toContain('moto-test-secret');
    expectNoLeak(server.output(), [...deploy.secrets, 'moto-test-secret']);
  }, 240_000);

  it('killed with its upload unanswered: restarted, it finds the segment moto stored after, with no gap and no duplicate', async () => {
    const moto = await startMotoServer();
    cleanups.push(() => moto.stop());
    // Big segments, so that an upload waiting in moto's socket is told from the small requests around it.
    const deploy = await deployment(kind, moto, {
      KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: '60',
      KEYBRAKE_AUDIT_LIVE_RECORDS: '1',
    });
    const store = await deploy.store();
    const sink = sinkOf(deploy);
    let server = await serve(deploy.env);
    let caught = false;
    let killedAt: ArchiveState | undefined;
    const seen: number[] = [];
    for (let attempt = 0; attempt < 80 && !caught; attempt += 1) {
      // Calls go on while moto is stopped at some moment of a round: an upload caught unanswered
      // has its segment's body waiting in moto's socket.
      const traffic = calls(server, 160).then(
        () => undefined,
        (error: unknown) => error,
      );
      await new Promise((resolve) => setTimeout(resolve, 200 + Math.floor(Math.random() * 400)));
      moto.pause();
      await new Promise((resolve) => setTimeout(resolve, 150));
      const queued = motoRecvQueue(moto);
      seen.push(queued);
      // A round sends one request at a time. Its requests without a body (list, head, get) queue 785
      // to 852 bytes here; a segment's PUT queues its headers and its gzip body, 2,400 bytes and up
      // even for the few records a round finds chained on Redis (CI saw 2,470 to 3,241 there, never
      // above the 3,500 this used to wait for).
      caught = queued > 1500;
      if (caught) {
        // Killed with the upload unanswered (the calls in flight die with it).
        const recorded = await store.archiveState();
        server.child.kill('SIGKILL');
        await server.exited;
        await traffic;
        killedAt = recorded;
        break;
      }
      moto.resume();
      const failure = await traffic;
      if (failure) throw failure;
    }
    expect(caught, `an upload was caught in flight (receive queues seen: ${seen.join(' ')})`).toBe(true);
    const recorded = killedAt as ArchiveState;
    moto.resume();
    // moto reads the upload the dead proxy sent, and stores it: in the sink, not recorded in the store.
    const stored = await until(
      'the orphan segment in the sink',
      async () => (await sink.list()).map((name) => parseSegmentName(name)?.lastSeq ?? 0),
      (lasts) => (lasts.at(-1) ?? 0) > recorded.archivedThrough,
      30_000,
    );
    const orphanLast = stored.at(-1) as number;
    expect(await store.archiveState()).toMatchObject({ archivedThrough: recorded.archivedThrough });
    // Nothing of it left the live store.
    expect((await liveSeqs(store))[0]).toBe(recorded.archivedThrough + 1);

    server = await serve(deploy.env);
    await until(
      'the orphan adopted',
      () => store.archiveState(),
      (state) => state.archivedThrough >= orphanLast,
    );
    await calls(server, 20);
    const head = await store.completeAuditHead();
    const final = await until(
      'caught up',
      () => store.archiveState(),
      (state) => state.archivedThrough >= head.records - 60,
    );
    expect(await expectTiled(sink)).toBeGreaterThanOrEqual(final.archivedThrough);
    expect(server.output()).toMatch(/"adopted":true/);
    expect(await verify(server, deploy.apiKey)).toMatchObject({ ok: true });
  }, 300_000);

  it('two replicas race for the lease: one archiver at a time, no overlapping segment, no double trim', async () => {
    const moto = await startMotoServer();
    cleanups.push(() => moto.stop());
    const deploy = await deployment(kind, moto, {
      KEYBRAKE_ARCHIVE_INTERVAL: '50ms',
      KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: '4',
    });
    const [a, b] = await Promise.all([serve(deploy.env), serve(deploy.env)]);
    const store = await deploy.store();
    const sink = sinkOf(deploy);
    await Promise.all([calls(a as ServerProcess, 40), calls(b as ServerProcess, 40)]);
    const head = await store.completeAuditHead();
    expect(head.records).toBe(80);
    // 80 records, 5 live: archived and trimmed through 75 in the end, in segments of at most 4.
    const state = await until(
      'caught up',
      () => store.archiveState(),
      (s) => s.archivedThrough >= 75 && s.trimmedThrough >= 75,
    );
    expect(state.archivedThrough).toBe(75);
    const tiled = await expectTiled(sink);
    const names = await sink.list();
    // Each segment recorded once: as many recorded as stored (an unrecorded one would be the next).
    expect(state.segments).toBe(
      names.filter((name) => (parseSegmentName(name)?.lastSeq ?? 0) <= state.archivedThrough).length,
    );
    expect(tiled).toBeGreaterThanOrEqual(state.archivedThrough);
    expect(state.trimmedThrough).toBe(state.archivedThrough);
    expect((await liveSeqs(store))[0]).toBe(76);
    // Both replicas archived at some point or one did everything: either way each segment is logged once.
    const logged = [a, b].flatMap((server) =>
      [...(server as ServerProcess).output().matchAll(/"name":"(segments\/[^"]+)"/g)].map((m) => m[1]),
    );
    expect(new Set(logged).size).toBe(logged.length);
    expect(await verify(a as ServerProcess, deploy.apiKey)).toMatchObject({ ok: true });
  }, 240_000);
});
