import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { runCli } from './archive-segments.js';
import { startRelay, type CountingRelay } from './counting-relay.js';
import { adminClient, json, TEST_STORE, type AdminClient } from './helpers.js';
import { startRedis } from './redis-server.js';
import { startStripeStandIn } from './stand-in-vendors.js';
import { RELEASES, releaseCli, type Release } from './upgrade-releases.js';
import { CLI, expectNoLeak, serverEnvironment, spawnServer, type ServerProcess } from './server-process.js';

/**
 * Data written by an earlier release (built from git history by scripts/build-release.sh) keeps
 * working after an upgrade: the old `keybrake serve` writes what a user has, through HTTP, on a data
 * folder or a real Redis; the new one starts on the same data and is held to it, through HTTP and
 * the CLI, with every vendor call counted by a relay in front of stripe-mock.
 */

const CHARGE = 'POST /v1/payment_intents';
/** Each test starts three or four `keybrake serve` processes one after another: slow on a busy machine. */
const PROCESSES_TIMEOUT_MS = 180_000;

interface Deployment {
  readonly env: Record<string, string>;
  readonly apiKey: string;
  readonly secrets: Record<string, string>;
  readonly relay: CountingRelay;
}

/** A data folder (embedded) or a fresh redis-server (Redis, with one signing key as replicas share). */
async function deployment(vendor: string = inject('stripeMockUrl')): Promise<Deployment> {
  const relay = await startRelay(vendor);
  const extra: Record<string, string> = { KEYBRAKE_STRIPE_BASE_URL: relay.url };
  if (TEST_STORE === 'redis') {
    const redis = await startRedis();
    onTestFinished(() => redis.stop());
    extra.KEYBRAKE_REDIS_URL = redis.url;
    extra.KEYBRAKE_AUDIT_SIGNING_KEY = generateKeyPairSync('ed25519')
      .privateKey.export({ type: 'pkcs8', format: 'pem' })
      .toString();
  }
  const { env, apiKey, secrets } = serverEnvironment(extra);
  return { env, apiKey, secrets, relay };
}

/** `keybrake serve` of `cli` (the release's or this tree's), stopped at the end of the test if still up. */
async function serve(cli: string, env: Record<string, string>): Promise<ServerProcess> {
  const server = await spawnServer(env, { command: [process.execPath, cli, 'serve'] });
  onTestFinished(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
  });
  // A Redis client connects in the background and fails closed until then.
  await waitFor(
    `${cli} to be ready`,
    async () => (await fetch(`${server.url}/readyz`)).status,
    (status) => status === 200,
  );
  return server;
}

async function stop(server: ServerProcess): Promise<void> {
  server.child.kill('SIGTERM');
  expect(await server.exited, server.output()).toBe(0);
}

interface Answer {
  readonly status: number;
  readonly body: any;
}

async function charge(
  url: string,
  vaultKey: string,
  cents: number,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const response = await fetch(`${url}/stripe/v1/payment_intents`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${vaultKey}`,
      'content-type': 'application/x-www-form-urlencoded',
      ...headers,
    },
    body: new URLSearchParams({ amount: String(cents), currency: 'usd' }).toString(),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : undefined };
}

interface Issued {
  readonly key_id: string;
  readonly vault_key: string;
}

async function issue(admin: AdminClient, body: Record<string, unknown>): Promise<Issued> {
  const issued = await admin('POST', '/vault/keys', {
    vendor: 'stripe',
    allowed_endpoints: [CHARGE],
    expires_in: '24h',
    ...body,
  });
  expect(issued.status, JSON.stringify(issued.body)).toBe(201);
  return issued.body as Issued;
}

/** What the old release wrote, as it answered. */
interface Written {
  readonly keys: Record<'root' | 'child' | 'revoked' | 'tainted' | 'expired', Issued>;
  readonly views: Record<string, Record<string, unknown>>;
  readonly calls: Record<string, unknown[]>;
  readonly idempotencyKey: string;
  readonly idempotentId: string;
  /** What a charge on the revoked and on the tainted key got from the old release. */
  readonly revokedAnswer: Answer;
  readonly taintedAnswer: Answer;
  readonly records: number;
}

/**
 * Through HTTP, what a user of the release has: a family (root $10 + child $4) with part of its
 * caps spent, an idempotent charge, a revoked key, a tainted key, a signed audit checkpoint.
 */
async function writeUserData(url: string, admin: AdminClient): Promise<Written> {
  const root = await issue(admin, { usd_cap: 10, agent_run_label: 'upgrade/root' });
  const child = await issue(admin, { usd_cap: 4, parent_key_id: root.key_id, agent_run_label: 'upgrade/child' });
  const revoked = await issue(admin, { usd_cap: 5, agent_run_label: 'upgrade/revoked' });
  const tainted = await issue(admin, { usd_cap: 5, agent_run_label: 'upgrade/tainted' });
  // A family that expires now: the new release's purge (issue 23) is to remove it.
  const expired = await issue(admin, { usd_cap: 1, expires_in: '1s', agent_run_label: 'upgrade/expired' });
  for (let i = 0; i < 3; i += 1) expect((await charge(url, child.vault_key, 100)).status).toBe(200);
  for (let i = 0; i < 2; i += 1) expect((await charge(url, root.vault_key, 100)).status).toBe(200);
  expect((await charge(url, revoked.vault_key, 100)).status).toBe(200);
  expect((await charge(url, tainted.vault_key, 50)).status).toBe(200);
  const idempotencyKey = `upgrade-${randomUUID()}`;
  const idempotent = await charge(url, root.vault_key, 100, { 'idempotency-key': idempotencyKey });
  expect(idempotent.status).toBe(200);
  expect((await admin('DELETE', `/vault/keys/${revoked.key_id}`)).status).toBe(200);
  expect((await admin('POST', `/vault/keys/${tainted.key_id}/taint`)).status).toBe(200);
  const revokedAnswer = await charge(url, revoked.vault_key, 100);
  expect(revokedAnswer).toMatchObject({ status: 401, body: { error: { code: 'vault_key_revoked' } } });
  const taintedAnswer = await charge(url, tainted.vault_key, 100);
  expect(taintedAnswer).toMatchObject({ status: 403, body: { error: { code: 'tainted_request_refused' } } });
  expect((await admin('POST', '/audit/checkpoints')).status).toBe(201);
  const expiresAt = Date.parse((expired as Issued & { expires_at: string }).expires_at);
  while (Date.now() <= expiresAt) await sleep(50);
  const keys = { root, child, revoked, tainted, expired };
  const views: Record<string, Record<string, unknown>> = {};
  const calls: Record<string, unknown[]> = {};
  for (const key of Object.values(keys)) {
    const view = await admin('GET', `/vault/keys/${key.key_id}`);
    expect(view.status).toBe(200);
    views[key.key_id] = view.body;
    calls[key.key_id] = (await admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
  }
  expect(views[child.key_id]).toMatchObject({ spent_usd: 3, status: 'active', usd_cap: 4 });
  expect(views[revoked.key_id]).toMatchObject({ status: 'revoked' });
  expect(views[tainted.key_id]).toMatchObject({ tainted: true });
  expect(views[expired.key_id]).toMatchObject({ status: 'expired' });
  const verified = (await admin('GET', '/audit/verify')).body;
  expect(verified).toMatchObject({ ok: true });
  return {
    keys,
    views,
    calls,
    idempotencyKey,
    idempotentId: idempotent.body.id,
    revokedAnswer,
    taintedAnswer,
    records: verified.records,
  };
}

/** A directory archive (removed after the test) that keeps 2 records live, in segments of 4, every 100 ms. */
function archiving(): { archiveDir: string; archiveEnv: Record<string, string> } {
  const archiveDir = mkdtempSync(join(tmpdir(), 'keybrake-upgrade-archive-'));
  onTestFinished(() => rmSync(archiveDir, { recursive: true, force: true }));
  return {
    archiveDir,
    archiveEnv: {
      KEYBRAKE_ARCHIVE: `dir:${archiveDir}`,
      KEYBRAKE_AUDIT_LIVE_RECORDS: '2',
      KEYBRAKE_ARCHIVE_SEGMENT_RECORDS: '4',
      KEYBRAKE_ARCHIVE_INTERVAL: '100ms',
    },
  };
}

/** Waits, however long a busy machine takes (the test's timeout bounds it), until `done` holds. */
async function waitFor<T>(what: string, read: () => Promise<T>, done: (value: T) => boolean): Promise<T> {
  for (let i = 0; ; i += 1) {
    const value = await read();
    if (done(value)) return value;
    if (i > 3000) throw new Error(`${what}: still ${JSON.stringify(value)}`);
    await sleep(100);
  }
}

describe.each(RELEASES)(`upgrade from release $short, ${TEST_STORE} store`, (release: Release) => {
  it(
    'the new serve keeps the spend, caps, idempotency, revocation, taint, calls, key list and audit chain; archiving then takes the old records',
    async () => {
      const oldCli = await releaseCli(release);
      const deployed = await deployment();
      const { env, apiKey, relay } = deployed;

      const old = await serve(oldCli, env);
      const written = await writeUserData(old.url, adminClient(old.url, apiKey));
      await stop(old);
      const { root, child, revoked, tainted, expired } = written.keys;
      const forwardedBefore = relay.forwarded(CHARGE);
      expect(forwardedBefore).toBe(8);

      // The new release on the same data, archiving off (the calls are all still live).
      const upgraded = await serve(CLI, { ...env, KEYBRAKE_ARCHIVE: 'off' });
      const admin = adminClient(upgraded.url, apiKey);
      for (const [keyId, view] of Object.entries(written.views)) {
        const now = await admin('GET', `/vault/keys/${keyId}`);
        expect(now.status).toBe(200);
        expect(now.body, `key ${view.agent_run_label}`).toMatchObject(view);
        const calls = (await admin('GET', `/vault/keys/${keyId}/calls`)).body.calls;
        expect(calls, `calls of ${view.agent_run_label}`).toMatchObject(written.calls[keyId] as unknown[]);
      }
      // The console's key list has the old keys, with their spend.
      const listed = (await admin('GET', '/vault/keys?limit=100')).body;
      expect(listed.keys.map((key: { key_id: string }) => key.key_id).sort()).toEqual(
        Object.keys(written.views).sort(),
      );
      for (const entry of listed.keys) {
        expect(entry.spent_usd).toBe(written.views[entry.key_id]?.spent_usd);
        expect(entry.calls).toBe(written.calls[entry.key_id]?.length);
      }
      const verified = (await admin('GET', '/audit/verify')).body;
      expect(verified).toMatchObject({ ok: true, records: written.records, untrusted_checkpoints: 0 });
      expect(verified.checkpoints).toBeGreaterThanOrEqual(1);

      // The idempotent repeat is replayed, not charged again.
      const repeat = await charge(upgraded.url, root.vault_key, 100, { 'idempotency-key': written.idempotencyKey });
      expect(repeat).toMatchObject({ status: 200, body: { id: written.idempotentId } });
      // Revoked stays revoked, tainted stays tainted: the same answers as from the old release.
      expect(await charge(upgraded.url, revoked.vault_key, 100)).toMatchObject(written.revokedAnswer);
      expect(await charge(upgraded.url, tainted.vault_key, 100)).toMatchObject(written.taintedAnswer);
      expect(relay.forwarded(CHARGE)).toBe(forwardedBefore);

      // The child's cap holds exactly where its remaining budget says: a cent more is refused, unforwarded.
      const childNow = (await admin('GET', `/vault/keys/${child.key_id}`)).body;
      const remainingCents = Math.round((childNow.usd_cap - childNow.spent_usd) * 100);
      expect(remainingCents).toBe(100);
      const over = await charge(upgraded.url, child.vault_key, remainingCents + 1);
      expect(over.status).toBe(429);
      expect(over.body.error.code).toBe('cap_exhausted');
      expect(relay.forwarded(CHARGE)).toBe(forwardedBefore);
      expect((await charge(upgraded.url, child.vault_key, remainingCents)).status).toBe(200);
      const after = await charge(upgraded.url, child.vault_key, 1);
      expect(after.status).toBe(429);
      expect(after.body.error.code).toBe('cap_exhausted');
      expect(relay.forwarded(CHARGE)).toBe(forwardedBefore + 1);
      expect((await admin('GET', `/vault/keys/${child.key_id}`)).body).toMatchObject({ spent_usd: 4, reserved_usd: 0 });
      // The root's own calls, old and new, chain on.
      expect((await charge(upgraded.url, root.vault_key, 100)).status).toBe(200);
      const chained = (await admin('GET', '/audit/verify')).body;
      expect(chained).toMatchObject({ ok: true, untrusted_checkpoints: 0 });
      expect(chained.records).toBeGreaterThan(written.records);
      const rootSpent = (await admin('GET', `/vault/keys/${root.key_id}`)).body.spent_usd;
      await stop(upgraded);

      // Archiving on: the old records are archived and trimmed; verification stays ok, online and offline.
      const { archiveDir, archiveEnv } = archiving();
      const archiver = await serve(CLI, { ...env, ...archiveEnv, KEYBRAKE_EXPIRED_KEY_RETENTION: '1ms' });
      const archivingAdmin = adminClient(archiver.url, apiKey);
      // A further call gives the archiver a checkpoint past the old records to cut at.
      expect((await charge(archiver.url, root.vault_key, 100)).status).toBe(200);
      const total = chained.records + 1;
      const archived = await waitFor(
        'the archive to take the old records',
        async () => (await archivingAdmin('GET', '/audit/verify')).body,
        (body) => body.ok === false || (body.archived_records ?? 0) >= written.records,
      );
      expect(archived).toMatchObject({ ok: true, records: total });
      const rootCalls = (await archivingAdmin('GET', `/vault/keys/${root.key_id}/calls`)).body;
      expect(rootCalls.archived.through_seq).toBeGreaterThanOrEqual(written.records);
      // Trimmed from the store, not only copied out; the spend is the key's, not its records'.
      expect(rootCalls.calls.every((call: { seq: number }) => call.seq > rootCalls.archived.through_seq)).toBe(true);
      expect((await archivingAdmin('GET', `/vault/keys/${root.key_id}`)).body.spent_usd).toBe(rootSpent + 1);
      expect((await archivingAdmin('GET', `/vault/keys/${child.key_id}`)).body.spent_usd).toBe(4);
      // The expired family the old release wrote is removed once its records are archived.
      await waitFor(
        'the expired family to be removed',
        async () => (await archivingAdmin('GET', `/vault/keys/${expired.key_id}`)).status,
        (status) => status === 404,
      );
      expect((await archivingAdmin('GET', `/vault/keys/${root.key_id}`)).status).toBe(200);
      const publicKey = join(archiveDir, '..', `${release.short}-${randomUUID()}.pub.pem`);
      writeFileSync(publicKey, (await archivingAdmin('GET', '/audit/checkpoints')).body.public_key.pem);
      onTestFinished(() => rmSync(publicKey, { force: true }));
      const offline = await runCli([
        'audit',
        'verify-archive',
        '--sink',
        `dir:${archiveDir}`,
        '--public-key',
        publicKey,
      ]);
      expect(offline.code, offline.stderr).toBe(0);
      expect(JSON.parse(offline.stdout)).toMatchObject({ ok: true });
      await stop(archiver);
      console.log(
        `[figures] upgrade ${release.short} -> this tree (${TEST_STORE}): ${written.records} old records, ` +
          `${total} after, ${archived.archived_records} archived in ${archived.segments} segments; ` +
          `${relay.forwarded(CHARGE)} charges reached stripe-mock`,
      );
      expectNoLeak(old.output() + upgraded.output() + archiver.output(), [
        ...Object.values(deployed.secrets),
        ...Object.values(written.keys).map((key) => key.vault_key),
      ]);
    },
    PROCESSES_TIMEOUT_MS,
  );

  it(
    'PaymentIntents the old release created are priced by the new one from what it tracked (stand-in Stripe: stripe-mock keeps no state)',
    async () => {
      const oldCli = await releaseCli(release);
      const stripe = await startStripeStandIn();
      const { env, apiKey } = await deployment(stripe.url);
      const old = await serve(oldCli, env);
      const oldAdmin = adminClient(old.url, apiKey);
      const key = await issue(oldAdmin, {
        usd_cap: 10,
        allowed_endpoints: [CHARGE, 'POST /v1/payment_intents/*/confirm', 'POST /v1/payment_intents/*/capture'],
      });
      const post = (url: string, path: string, params: Record<string, string>) =>
        fetch(`${url}/stripe${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams(params).toString(),
        });
      // Created, not confirmed ($0.50 to move later); and $1 authorized, not captured.
      const pending = await json(await post(old.url, '/v1/payment_intents', { amount: '50', currency: 'usd' }));
      const authorized = await json(
        await post(old.url, '/v1/payment_intents', {
          amount: '100',
          currency: 'usd',
          capture_method: 'manual',
          confirm: 'true',
        }),
      );
      expect(stripe.ledger.totalUsd).toBe(0);
      const oldSpent = (await oldAdmin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd;
      await stop(old);

      const upgraded = await serve(CLI, { ...env, KEYBRAKE_ARCHIVE: 'off' });
      const admin = adminClient(upgraded.url, apiKey);
      expect((await admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(oldSpent);
      // Priced from the tracked PaymentIntent (one the proxy had not seen is refused, 400 request_not_priceable).
      const confirmed = await post(upgraded.url, `/v1/payment_intents/${pending.id}/confirm`, {});
      expect(confirmed.status, await confirmed.clone().text()).toBe(200);
      const captured = await post(upgraded.url, `/v1/payment_intents/${authorized.id}/capture`, {});
      expect(captured.status, await captured.clone().text()).toBe(200);
      expect(stripe.ledger.totalUsd).toBe(1.5);
      // What makes the two 200s mean something: a PaymentIntent the proxy never saw is refused.
      const unseen = await post(upgraded.url, `/v1/payment_intents/${stripe.createDirectly(50)}/confirm`, {});
      expect(unseen.status).toBe(400);
      expect((await json(unseen)).error.code).toBe('request_not_priceable');
      expect(stripe.ledger.totalUsd).toBe(1.5);
      // Each moved dollar booked once, across the two releases.
      expect((await admin('GET', `/vault/keys/${key.key_id}`)).body).toMatchObject({ spent_usd: 1.5, reserved_usd: 0 });
      expect((await admin('GET', '/audit/verify')).body).toMatchObject({ ok: true });
      await stop(upgraded);
    },
    PROCESSES_TIMEOUT_MS,
  );
});

/**
 * A rolling upgrade: the old and the new replica on one Redis at once, calls alternating between
 * them and racing. The money holds (both run every cap check in the family's own Lua script, on
 * the same fields) and so does the chain (the old replica's sealer keeps sealing beside the new
 * one's archive and trim, which remove sealed entries from the heads of the family list and of its
 * seqs list alike). What does not: see README "Upgrading" (an old replica cannot verify a trimmed
 * chain; one from before issue 22 issues keys the list and the purge do not see).
 */
describe.runIf(TEST_STORE === 'redis').each(RELEASES)(
  'rolling upgrade from release $short: old and new replica on one Redis at once',
  (release: Release) => {
    it(
      'no spend past a cap, nothing forwarded past it, and the chain takes both replicas records',
      async () => {
        const oldCli = await releaseCli(release);
        const { env, apiKey, relay, secrets } = await deployment();
        const old = await serve(oldCli, env);
        const upgraded = await serve(CLI, { ...env, ...archiving().archiveEnv });
        const servers = [old, upgraded];
        const [oldAdmin, newAdmin] = servers.map((server) => adminClient(server.url, apiKey)) as [
          AdminClient,
          AdminClient,
        ];
        // A family issued on the old replica with a child issued on the new one, and a key of the new one.
        const family = await issue(oldAdmin, { usd_cap: 5, agent_run_label: 'rolling/old' });
        const child = await issue(newAdmin, { usd_cap: 3, parent_key_id: family.key_id });
        const fresh = await issue(newAdmin, { usd_cap: 4, agent_run_label: 'rolling/new' });
        const keys = [family, child, fresh];
        // Idempotency and revocation across the two: charged on the old, replayed by the new; revoked
        // on the new, refused by the old.
        const idem = await issue(oldAdmin, { usd_cap: 5, agent_run_label: 'rolling/idempotent' });
        const idempotencyKey = `rolling-${randomUUID()}`;
        const first = await charge(old.url, idem.vault_key, 100, { 'idempotency-key': idempotencyKey });
        expect(first.status).toBe(200);
        const forwardedOnce = relay.forwarded(CHARGE);
        const replay = await charge(upgraded.url, idem.vault_key, 100, { 'idempotency-key': idempotencyKey });
        expect(replay).toMatchObject({ status: 200, body: { id: first.body.id } });
        expect((await newAdmin('DELETE', `/vault/keys/${idem.key_id}`)).status).toBe(200);
        expect(await charge(old.url, idem.vault_key, 100)).toMatchObject({
          status: 401,
          body: { error: { code: 'vault_key_revoked' } },
        });
        expect(relay.forwarded(CHARGE)).toBe(forwardedOnce);
        const before = relay.forwarded(CHARGE);
        const answers: Answer[] = [];
        // 24 racing, then 12 one by one: each key 12 tries of $1, alternating replicas.
        await Promise.all(
          Array.from({ length: 24 }, async (_, i) => {
            answers.push(await charge((servers[i % 2] as ServerProcess).url, (keys[i % 3] as Issued).vault_key, 100));
          }),
        );
        for (let i = 0; i < 12; i += 1) {
          answers.push(await charge((servers[i % 2] as ServerProcess).url, (keys[i % 3] as Issued).vault_key, 100));
        }
        for (const answer of answers) {
          if (answer.status !== 200)
            expect(answer).toMatchObject({ status: 429, body: { error: { code: 'cap_exhausted' } } });
        }
        const charged = answers.filter((answer) => answer.status === 200).length;
        // Exactly the caps: the family's $5 (root and child together) and the new key's $4.
        expect(charged).toBe(9);
        expect(relay.forwarded(CHARGE) - before).toBe(9);
        for (const admin of [oldAdmin, newAdmin]) {
          const [root, kid, other] = await Promise.all(
            keys.map(async (key) => (await admin('GET', `/vault/keys/${key.key_id}`)).body),
          );
          expect(root).toMatchObject({ spent_usd: 5, reserved_usd: 0 });
          expect(kid.spent_usd).toBeLessThanOrEqual(3);
          expect(other).toMatchObject({ spent_usd: 4, reserved_usd: 0 });
        }
        // Every call's record, from either replica, chained once, across the archive and the live store.
        const verified = await waitFor(
          'the archive to move',
          async () => (await newAdmin('GET', '/audit/verify')).body,
          (body) => body.ok === false || (body.archived_records ?? 0) > 0,
        );
        // (The idempotent charge, its replay and the refusal after the revocation: 3 more records.)
        expect(verified).toMatchObject({ ok: true, records: answers.length + 3 });
        // More calls through the old replica after the trim still chain on.
        for (let i = 0; i < 3; i += 1) expect((await charge(old.url, fresh.vault_key, 100)).status).toBe(429);
        expect(await newAdmin('GET', '/audit/verify')).toMatchObject({
          body: { ok: true, records: answers.length + 6 },
        });
        const oldVerdict = (await oldAdmin('GET', '/audit/verify')).body;
        console.log(
          `[figures] rolling ${release.short} + this tree on one Redis: ${answers.length} calls, ${charged} charged ` +
            `(caps 5 + 4), chain ok on the new replica (${verified.archived_records} archived); ` +
            `the old replica's own verify: ${JSON.stringify(oldVerdict)}`,
        );
        await stop(old);
        await stop(upgraded);
        expectNoLeak(old.output() + upgraded.output(), [
          ...Object.values(secrets),
          ...[...keys, idem].map((key) => key.vault_key),
        ]);
      },
      PROCESSES_TIMEOUT_MS,
    );
  },
);
