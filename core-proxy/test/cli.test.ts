import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, inject, it, onTestFinished } from 'vitest';
import { newSecrets } from './helpers.js';
import { CLI, expectNoLeak, spawnServer } from './server-process.js';

const run = promisify(execFile);

describe('keybrake CLI (real process, stripe-mock)', () => {
  it('issues, shows, lists calls of, revokes keys and verifies the audit chain', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-cli-'));
    const secrets = newSecrets();
    const server = await spawnServer({
      KEYBRAKE_API_KEYS: 'cli-admin-key',
      KEYBRAKE_DATA_DIR: dataDir,
      KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
      ...secrets,
    });
    onTestFinished(() => {
      server.child.kill('SIGTERM');
      rmSync(dataDir, { recursive: true, force: true });
    });
    const env = { PATH: process.env.PATH ?? '', KEYBRAKE_URL: server.url, KEYBRAKE_API_KEY: 'cli-admin-key' };
    const keybrake = async (...args: string[]) =>
      JSON.parse((await run(process.execPath, [CLI, ...args], { env })).stdout);

    const issued = await keybrake(
      'keys',
      'issue',
      '--vendor',
      'stripe',
      '--usd-cap',
      '50',
      '--allow',
      'POST /v1/payment_intents',
      '--allow',
      'GET /v1/customers/*',
      '--expires-in',
      '2h',
      '--label',
      'cli/run-1',
    );
    expect(issued).toMatchObject({
      vendor: 'stripe',
      usd_cap: 50,
      allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/customers/*'],
      agent_run_label: 'cli/run-1',
    });

    const charge = await fetch(`${server.url}/stripe/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${issued.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=1234&currency=usd',
    });
    expect(charge.status).toBe(200);

    expect(await keybrake('keys', 'show', issued.key_id)).toMatchObject({ status: 'active', spent_usd: 12.34 });
    const { calls } = await keybrake('calls', issued.key_id);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ outcome: 'forwarded', cost_usd: 12.34 });
    expect(await keybrake('audit', 'verify')).toMatchObject({ ok: true, records: 1 });
    expect(await keybrake('keys', 'revoke', issued.key_id)).toEqual({ key_id: issued.key_id, status: 'revoked' });

    const refused = await run(
      process.execPath,
      [CLI, 'keys', 'issue', '--vendor', 'stripe', '--allow', 'POST /v1/charges', '--expires-in', '1h'],
      { env },
    ).catch((error: { code: number; stderr: string }) => error);
    expect((refused as { code: number }).code).toBe(1);
    expect(JSON.parse((refused as { stderr: string }).stderr).error.code).toBe('invalid_request');

    const usage = await run(process.execPath, [CLI, 'nonsense'], { env }).catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect((usage as { code: number }).code).toBe(2);
    expectNoLeak(server.output(), [...Object.values(secrets), issued.vault_key]);
  });
});
