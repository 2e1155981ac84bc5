import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Stripe from 'stripe';
import { stripeOptions } from '@keybrake/client/stripe';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type ConsoleProxy, launchChromium, signIn, startConsoleProxy } from './console-harness.js';

/**
 * Where the screenshots go: `scripts/console-screenshots.sh` sets `docs/`, whose PNGs the README
 * shows; otherwise a temporary folder (the test still checks each view showed the real data).
 */
const OUT = process.env.KEYBRAKE_CONSOLE_SCREENSHOTS_DIR
  ? resolve(process.env.KEYBRAKE_CONSOLE_SCREENSHOTS_DIR)
  : mkdtempSync(join(tmpdir(), 'keybrake-console-shots-'));
const UPDATE = { timeout: 90_000, interval: 250 };

async function payments(
  proxy: ConsoleProxy,
  vaultKey: string,
  amounts: readonly number[],
  pauseMs?: number,
): Promise<void> {
  const stripe = new Stripe(vaultKey, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
  const pay = (amount: number) => stripe.paymentIntents.create({ amount, currency: 'usd' });
  // Refusals (a cap hit) are part of the picture: they are settled, not thrown away.
  if (pauseMs === undefined) {
    await Promise.allSettled(amounts.map(pay));
    return;
  }
  // One after another, spread in time, for the spend-over-time chart.
  for (const amount of amounts) {
    await pay(amount).catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}

async function shoot(page: Page, name: string): Promise<void> {
  const path = join(OUT, `console-${name}.png`);
  await page.screenshot({ path, fullPage: false });
  // A PNG, and not an empty one.
  expect(readFileSync(path).subarray(1, 4).toString()).toBe('PNG');
}

describe('issue 22: screenshots of each view, from real data (embedded store)', () => {
  let proxy: ConsoleProxy;
  let browser: Browser;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    [proxy, browser] = await Promise.all([startConsoleProxy('embedded'), launchChromium()]);
    const key = (label: string, extra: Record<string, unknown> = {}) =>
      proxy.issueKey({
        vendor: 'stripe',
        usd_cap: 50,
        allowed_endpoints: ['POST /v1/payment_intents'],
        expires_in: '6h',
        agent_run_label: label,
        ...extra,
      });
    const billing = await key('argo/billing-agent-x7k2p', { usd_cap: 80 });
    const billingChild = await key('argo/billing-agent-x7k2p', { parent_key_id: billing.key_id, usd_cap: 8 });
    const billingTainted = await key('argo/billing-agent-x7k2p', {
      parent_key_id: billing.key_id,
      usd_cap: 5,
      tainted: true,
    });
    const refunds = await key('temporal/refund-run-4411', { usd_cap: undefined, daily_usd_cap: 25, expires_in: '2h' });
    const invoices = await key('conductor/invoice-batch-88', { usd_cap: 30, expires_in: '30m' });
    const research = await key('cloud-workflows/research-9f2', { usd_cap: 15 });
    ids.billing = billing.key_id;
    await payments(proxy, billing.vault_key, [1200, 850, 2300, 499, 1500, 999, 2750, 640, 1100, 3000, 725, 1899], 400);
    await payments(proxy, billingChild.vault_key, [250, 300, 199, 350, 400]);
    await payments(proxy, billingTainted.vault_key, [100, 100]);
    await payments(proxy, refunds.vault_key, [500, 725, 300, 1200, 450, 600]);
    await payments(proxy, invoices.vault_key, [1500, 990]);
    await payments(proxy, research.vault_key, [300]);
    await proxy.admin(`/vault/keys/${invoices.key_id}`, { method: 'DELETE' });
    await proxy.admin('/audit/checkpoints', { method: 'POST' });
  }, 300_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
  });

  test('sign-in, keys, execution and audit views', async () => {
    const context = await browser.newContext({
      viewport: { width: 1440, height: 900 },
      deviceScaleFactor: 1,
      locale: 'en-US',
      timezoneId: 'UTC',
      colorScheme: 'light',
    });
    const page = await context.newPage();
    await page.goto(`${proxy.url}/console/`);
    await page.getByLabel('Issuer key').fill('not-an-issuer-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').count(), UPDATE).toBe(1);
    await shoot(page, 'sign-in');

    await signIn(page, proxy.url, proxy.apiKey);
    await expect.poll(() => page.locator('.key-row[data-key-id]').count(), UPDATE).toBe(6);
    await expect.poll(() => page.locator('[data-feed]').getAttribute('data-feed'), UPDATE).toBe('live');
    await shoot(page, 'keys');

    await page.locator(`[data-key-id="${ids.billing}"] a`).first().click();
    await expect.poll(() => page.locator('[data-field="call-count"]').textContent(), UPDATE).toBe('12');
    await expect.poll(() => page.locator('.family .family-node').count(), UPDATE).toBe(3);
    await shoot(page, 'execution');
    await page.getByRole('button', { name: 'Revoke' }).click();
    await shoot(page, 'revoke-dialog');
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();

    await page.getByRole('link', { name: 'Audit' }).click();
    await expect.poll(() => page.locator('[data-verified]').getAttribute('data-verified'), UPDATE).toBe('true');
    await shoot(page, 'audit');
    await context.close();
  });
});
