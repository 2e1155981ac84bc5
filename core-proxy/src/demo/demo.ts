import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { buildApp } from '../http/app.js';
import { loadConfig } from '../config.js';
import { startSandboxStripe } from './sandbox-upstream.js';
import { SqliteStore } from '../store/sqlite-store.js';

const CAP_USD = 300;
const CALLS = 500;

/**
 * `pnpm demo`: a runaway fan-out of 500 parallel $1-$5 charges against one $300 vault key, through
 * the real proxy on the embedded store, to a local sandbox upstream.
 */
async function main(): Promise<void> {
  const sandbox = await startSandboxStripe();
  const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-demo-'));
  const apiKey = 'kb_admin_demo';
  const config = loadConfig({
    KEYBRAKE_API_KEYS: apiKey,
    KEYBRAKE_DATA_DIR: dataDir,
    STRIPE_SECRET_KEY: 'sk_test_sandbox_demo_secret',
    KEYBRAKE_STRIPE_BASE_URL: sandbox.url,
  });
  const app = await buildApp({ config, store: new SqliteStore({ dataDir }), logger: false });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const proxy = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const admin = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };

  console.log('Keybrake demo');
  console.log(`  upstream: a LOCAL SANDBOX at ${sandbox.url} standing in for Stripe. No real money moves.`);
  console.log(`  proxy:    ${proxy} (embedded store in ${dataDir})\n`);

  const issued = (await (
    await fetch(`${proxy}/vault/keys`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({
        vendor: 'stripe',
        usd_cap: CAP_USD,
        allowed_endpoints: ['POST /v1/payment_intents'],
        expires_in: '10m',
        agent_run_label: 'demo/billing-fan-out',
      }),
    })
  ).json()) as { key_id: string; vault_key: string };
  console.log(
    `Issued vault key ${issued.key_id} with a $${CAP_USD} cap; firing ${CALLS} parallel charges of $1-$5...\n`,
  );

  const started = Date.now();
  const outcomes = await Promise.all(
    Array.from({ length: CALLS }, async (_, i) => {
      const cents = 100 * (1 + (i % 5));
      const response = await fetch(`${proxy}/stripe/v1/payment_intents`, {
        method: 'POST',
        headers: { authorization: `Bearer ${issued.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: `amount=${cents}&currency=usd`,
      });
      await response.arrayBuffer();
      return { status: response.status, capHit: response.headers.get('x-keybrake-cap-hit') === 'true', cents };
    }),
  );
  const elapsed = Date.now() - started;
  const ok = outcomes.filter((o) => o.status === 200);
  const capped = outcomes.filter((o) => o.status === 429 && o.capHit);
  const key = (await (await fetch(`${proxy}/vault/keys/${issued.key_id}`, { headers: admin })).json()) as Record<
    string,
    unknown
  >;
  const calls = (
    (await (await fetch(`${proxy}/vault/keys/${issued.key_id}/calls`, { headers: admin })).json()) as {
      calls: { outcome: string }[];
    }
  ).calls;
  const verify = (await (await fetch(`${proxy}/audit/verify`, { headers: admin })).json()) as Record<string, unknown>;

  console.log(
    `Charged:   ${ok.length} calls, $${(ok.reduce((sum, o) => sum + o.cents, 0) / 100).toFixed(2)} (the sandbox saw $${sandbox.charged().toFixed(2)})`,
  );
  console.log(`Refused:   ${capped.length} calls with 429 X-Keybrake-Cap-Hit: true, nothing forwarded`);
  console.log(`Other:     ${CALLS - ok.length - capped.length}`);
  console.log(`Time:      ${elapsed} ms for ${CALLS} calls\n`);
  console.log(
    `Key ${issued.key_id}: status=${String(key.status)} spent=$${String(key.spent_usd)} reserved=$${String(key.reserved_usd)} remaining=$${String(key.remaining_usd)}`,
  );
  const byOutcome = calls.reduce<Record<string, number>>(
    (acc, c) => ({ ...acc, [c.outcome]: (acc[c.outcome] ?? 0) + 1 }),
    {},
  );
  console.log(
    `Audit:     ${calls.length} records for this key ${JSON.stringify(byOutcome)}; chain ok=${String(verify.ok)} head=${String(verify.head)}`,
  );

  await app.close();
  sandbox.server.close();
  rmSync(dataDir, { recursive: true, force: true });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
