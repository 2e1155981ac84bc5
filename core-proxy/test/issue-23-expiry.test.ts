import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy, stripeCharge, type TestProxy } from './helpers.js';
import { CLI } from './server-process.js';
import { ConfigError, loadConfig } from '../src/config.js';

/**
 * Issue 23: expired key families go on the archiver's schedule once their retention
 * (`KEYBRAKE_EXPIRED_KEY_RETENTION`) has passed and their audit records are archived; what a
 * user sees through HTTP: 404 `not_found` for the removed keys, 401 `invalid_vault_key` for their
 * vault keys, the live keys untouched, the chain still verifying, and the purge in /metrics. Runs
 * on the embedded store and on Redis (the shared suite). The vendor is a fake of our own: the
 * test needs a vendor answer per call, not Stripe's behaviour.
 */

const HOUR = 3_600_000;
const run = promisify(execFile);

let counter = 0;
async function setup(): Promise<{ proxy: TestProxy }> {
  const vendor = await startFakeVendor((request, response) => {
    counter += 1;
    const amount = Number(new URLSearchParams(request.body).get('amount'));
    sendJson(response, 200, { id: `pi_${counter}`, amount, currency: 'usd' }, { 'request-id': `req_${counter}` });
  });
  const proxy = await startProxy({
    env: {
      KEYBRAKE_STRIPE_BASE_URL: vendor.url,
      KEYBRAKE_EXPIRED_KEY_RETENTION: '1h',
      KEYBRAKE_ARCHIVE: `dir:${mkdtempSync(join(tmpdir(), 'keybrake-i23-expiry-archive-'))}`,
      KEYBRAKE_AUDIT_LIVE_RECORDS: '1',
      KEYBRAKE_AUDIT_LIVE_SECONDS: '1',
      // Rounds are driven by the test (`runOnce`): the timers' own rounds only run at start-up.
      KEYBRAKE_ARCHIVE_INTERVAL: '1h',
    },
  });
  return { proxy };
}

async function archiveEverything(proxy: TestProxy): Promise<void> {
  const archiver = proxy.app.keybrake.archiver;
  if (!archiver) throw new Error('the archive is off');
  while ((await archiver.runOnce()).kind === 'archived');
}

function issue(proxy: TestProxy, fields: Record<string, unknown>) {
  return proxy.issueKey({ vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'], ...fields });
}

describe('issue 23: expired keys are removed after their retention', () => {
  it('removes an expired family once its retention passed and its records are archived; live keys stay', async () => {
    const { proxy } = await setup();
    const root = await issue(proxy, { expires_in: '60s', agent_run_label: 'run-old' });
    const child = await issue(proxy, { expires_in: '60s', parent_key_id: root.key_id });
    const live = await issue(proxy, { expires_in: '7d', agent_run_label: 'run-live' });
    expect((await stripeCharge(proxy, child.vault_key, 1500)).status).toBe(200);
    expect((await stripeCharge(proxy, live.vault_key, 2500)).status).toBe(200);

    // Expired, inside the retention: still there, refused as expired, its calls listed.
    proxy.advance(61_000);
    const expired = await stripeCharge(proxy, child.vault_key, 100);
    expect(expired.status).toBe(401);
    expect((await json(expired)).error.code).toBe('vault_key_expired');
    await archiveEverything(proxy);
    expect(await proxy.app.keybrake.expiryPurger.runOnce()).toMatchObject({ kind: 'purged', families: 0 });
    expect((await proxy.admin('GET', `/vault/keys/${root.key_id}`)).body).toMatchObject({
      status: 'expired',
      spent_usd: 15,
    });

    // Past the retention, with its records archived: the family is gone.
    proxy.advance(HOUR);
    expect((await stripeCharge(proxy, live.vault_key, 500)).status).toBe(200);
    await archiveEverything(proxy);
    expect(await proxy.app.keybrake.expiryPurger.runOnce()).toMatchObject({
      kind: 'purged',
      families: 1,
      keys: 2,
      kept: 0,
    });
    for (const key of [root, child]) {
      const gone = await proxy.admin('GET', `/vault/keys/${key.key_id}`);
      expect(gone.status).toBe(404);
      expect(gone.body.error.code).toBe('not_found');
      expect((await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).status).toBe(404);
      const refused = await stripeCharge(proxy, key.vault_key, 100);
      expect(refused.status).toBe(401);
      expect((await json(refused)).error.code).toBe('invalid_vault_key');
    }
    expect((await proxy.admin('GET', `/vault/keys/${live.key_id}`)).body).toMatchObject({
      status: 'active',
      spent_usd: 30,
    });
    const listed = (await proxy.admin('GET', '/vault/keys')).body.keys.map((key: { key_id: string }) => key.key_id);
    expect(listed).toEqual([live.key_id]);
    // Removing keys removes no audit record: the chain from genesis still verifies.
    expect((await proxy.admin('GET', '/audit/verify')).body).toMatchObject({ ok: true });

    const metrics = await (await proxy.call('/metrics')).text();
    expect(metrics).toMatch(/keybrake_expiry_purged_total\{kind="keys"\} 2\b/);
    expect(metrics).toMatch(/keybrake_expiry_purged_total\{kind="families"\} 1\b/);
    expect(metrics).toMatch(/keybrake_expiry_last_error_timestamp_seconds 0\b/);
  });

  it('keeps an expired family whose audit records are still live (not archived yet)', async () => {
    const { proxy } = await setup();
    const root = await issue(proxy, { expires_in: '60s' });
    expect((await stripeCharge(proxy, root.vault_key, 1500)).status).toBe(200);
    proxy.advance(2 * HOUR);
    // Its one record is the chain's last, which stays live.
    expect(await proxy.app.keybrake.expiryPurger.runOnce()).toMatchObject({ kind: 'purged', families: 0, kept: 1 });
    const calls = (await proxy.admin('GET', `/vault/keys/${root.key_id}/calls`)).body.calls;
    expect(calls.map((call: { cost_usd: number }) => call.cost_usd)).toEqual([15]);
  });
});

describe('issue 23: retention settings', () => {
  it('refuses an idempotency retention under the contract’s 24 hours, at start-up', async () => {
    expect(() => loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_IDEMPOTENCY_RETENTION: '23h' })).toThrow(ConfigError);
    expect(() => loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_IDEMPOTENCY_RETENTION: 'soon' })).toThrow(
      /KEYBRAKE_IDEMPOTENCY_RETENTION/,
    );
    expect(loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_IDEMPOTENCY_RETENTION: '2d' }).expiry).toEqual({
      idempotencyRetentionMs: 48 * HOUR,
      keyRetentionMs: 30 * 24 * HOUR,
    });
    expect(loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_EXPIRED_KEY_RETENTION: '36h' }).expiry.keyRetentionMs).toBe(
      36 * HOUR,
    );
    // The server itself refuses to start, and says why.
    const failed = await run(process.execPath, [CLI, 'serve'], {
      env: {
        PATH: process.env.PATH ?? '',
        KEYBRAKE_API_KEYS: 'k',
        KEYBRAKE_PORT: '0',
        KEYBRAKE_DATA_DIR: mkdtempSync(join(tmpdir(), 'keybrake-i23-expiry-cfg-')),
        KEYBRAKE_IDEMPOTENCY_RETENTION: '1h',
      },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(failed.code).not.toBe(0);
    expect(failed.stderr).toContain('KEYBRAKE_IDEMPOTENCY_RETENTION must be at least 24h');
  });
});
