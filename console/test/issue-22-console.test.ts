import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Stripe from 'stripe';
import { stripeOptions } from '@keybrake/client/stripe';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  type ConsoleProxy,
  NetworkLog,
  type StoreKind,
  cspViolations,
  launchChromium,
  numberAttribute,
  recordCspViolations,
  signIn,
  startConsoleProxy,
} from './console-harness.js';

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** Long enough for a loaded machine; the assertions are on what the page shows, never on how fast. */
const UPDATE = { timeout: 90_000, interval: 200 };

/** One browser tab on the console, with everything it sent and received recorded. */
interface ConsoleTab {
  readonly context: BrowserContext;
  readonly page: Page;
  readonly network: NetworkLog;
}

async function openTab(browser: Browser): Promise<ConsoleTab> {
  const context = await browser.newContext({ acceptDownloads: true, locale: 'en-US', timezoneId: 'UTC' });
  await recordCspViolations(context);
  const page = await context.newPage();
  const network = new NetworkLog();
  await network.attach(context, page);
  return { context, page, network };
}

/**
 * What every test ends with: nothing the tab holds or exchanged contains a vault key or a vendor
 * secret (the DOM and form values, local and session storage, cookies, every request URL and
 * header, every response header and body, the live feed's bytes), the issuer key travels only in
 * the Authorization header, every request went to the proxy on 127.0.0.1, and the page broke no
 * rule of its CSP.
 */
async function closeTab(tab: ConsoleTab, proxy: ConsoleProxy): Promise<void> {
  const { page, context, network } = tab;
  const dom = await page.evaluate(() =>
    [document.documentElement.outerHTML, ...[...document.querySelectorAll('input')].map((input) => input.value)].join(
      '\n',
    ),
  );
  const storage = await page.evaluate(() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }]));
  const cookies = JSON.stringify(await context.cookies());
  expect(await cspViolations(page)).toEqual([]);
  await page.close();
  await network.settle();
  await network.detach();
  await context.close();

  const proxyOrigin = new URL(proxy.url).origin;
  expect(network.exchanges.length).toBeGreaterThan(0);
  for (const exchange of network.exchanges) {
    if (exchange.url.startsWith('data:') || exchange.url.startsWith('blob:')) continue;
    expect(new URL(exchange.url).origin, exchange.url).toBe(proxyOrigin);
  }
  const sent = network.exchanges.map((e) => [e.url, ...Object.values(e.requestHeaders)].join('\n')).join('\n');
  const received = [
    ...network.exchanges.map((e) => [...Object.values(e.responseHeaders ?? {}), e.body ?? ''].join('\n')),
    ...network.streamed,
  ].join('\n');
  const everything = { dom, storage, cookies, sent, received };
  for (const secret of [...proxy.vaultKeys, ...proxy.secrets]) {
    for (const [where, text] of Object.entries(everything)) {
      expect(text.includes(secret), `a vault key or vendor secret is in the page's ${where}`).toBe(false);
    }
  }
  // The issuer key: only ever as the bearer header of the page's own API calls.
  for (const [where, text] of Object.entries({ dom, storage, cookies, received })) {
    expect(text.includes(proxy.apiKey), `the issuer key is in the page's ${where}`).toBe(false);
  }
  for (const exchange of network.exchanges) {
    expect(exchange.url.includes(proxy.apiKey), 'the issuer key is in a URL').toBe(false);
    for (const [name, value] of Object.entries(exchange.requestHeaders)) {
      if (value.includes(proxy.apiKey)) expect([name, value]).toEqual(['authorization', `Bearer ${proxy.apiKey}`]);
    }
  }
}

/** A Stripe SDK client (the official one) on a vault key, through the proxy. */
function stripeThrough(proxy: ConsoleProxy, vaultKey: string): Stripe {
  return new Stripe(vaultKey, stripeOptions(proxy.url, { maxNetworkRetries: 0 }));
}

/** `count` concurrent $1.00 PaymentIntents through the proxy. */
async function fanOut(proxy: ConsoleProxy, vaultKey: string, count: number): Promise<void> {
  const stripe = stripeThrough(proxy, vaultKey);
  const results = await Promise.allSettled(
    Array.from({ length: count }, () => stripe.paymentIntents.create({ amount: 100, currency: 'usd' })),
  );
  expect(results.filter((result) => result.status === 'rejected')).toEqual([]);
}

function stripeKeyBody(label: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    vendor: 'stripe',
    usd_cap: 500,
    allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/payment_intents/*'],
    expires_in: '2h',
    agent_run_label: label,
    ...extra,
  };
}

/** Marks the document, to tell later that the page was never reloaded (a reload also signs out). */
async function markDocument(page: Page): Promise<void> {
  await page.evaluate(() => document.documentElement.setAttribute('data-test-document', 'first'));
}

async function sameDocument(page: Page): Promise<boolean> {
  return (await page.locator('html').getAttribute('data-test-document')) === 'first';
}

async function waitLive(page: Page): Promise<void> {
  await expect.poll(() => page.locator('[data-feed]').getAttribute('data-feed'), UPDATE).toBe('live');
}

const STORES: readonly StoreKind[] = ['embedded', 'redis'];

describe.each(STORES)('issue 22: the operator console in a real browser, on the %s store', (store) => {
  let proxy: ConsoleProxy;
  let browser: Browser;

  beforeAll(async () => {
    [proxy, browser] = await Promise.all([startConsoleProxy(store), launchChromium()]);
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
  });

  test('/console is served with the strict CSP, and the browser enforces it', async () => {
    const tab = await openTab(browser);
    const response = await tab.page.goto(`${proxy.url}/console`);
    expect(response?.url()).toBe(`${proxy.url}/console/`);
    const headers = response!.headers();
    expect(headers['content-security-policy']).toBe(CSP);
    expect(headers['x-content-type-options']).toBe('nosniff');
    expect(headers['referrer-policy']).toBe('no-referrer');
    await expect.poll(() => tab.page.getByLabel('Issuer key').count()).toBe(1);
    // The policy is live, not only sent: an inline script is refused and reported.
    const ran = await tab.page.evaluate(async () => {
      const script = document.createElement('script');
      script.textContent = 'window.inlineRan = true';
      document.body.append(script);
      await new Promise((resolve) => setTimeout(resolve, 100));
      return (window as unknown as { inlineRan?: boolean }).inlineRan === true;
    });
    expect(ran).toBe(false);
    const violations = await cspViolations(tab.page);
    expect(violations.some((violation) => violation.startsWith('script-src'))).toBe(true);
    await tab.page.evaluate(() => ((window as unknown as { cspViolations: string[] }).cspViolations.length = 0));
    await closeTab(tab, proxy);
  });

  test('a wrong issuer key is refused with a clear message, and nothing is shown', async () => {
    const tab = await openTab(browser);
    const answers: number[] = [];
    tab.page.on('response', (response) => {
      if (new URL(response.url()).pathname === '/vault/keys') answers.push(response.status());
    });
    await signIn(tab.page, proxy.url, `kb_admin_${randomUUID()}`);
    await expect.poll(() => tab.page.getByRole('alert').textContent(), UPDATE).toContain('refused (401 unauthorized)');
    expect(answers).toEqual([401]);
    expect(await tab.page.getByRole('link', { name: 'Keys' }).count()).toBe(0);
    expect(await tab.page.getByLabel('Issuer key').count()).toBe(1);
    await closeTab(tab, proxy);
  });

  test('signed in, a fan-out of 50 concurrent Stripe SDK calls moves the spend bar and the calls table live, without a reload', async () => {
    const label = `console-test/${store}/${randomUUID()}`;
    const key = await proxy.issueKey(stripeKeyBody(label));
    const tab = await openTab(browser);
    const { page } = tab;
    await signIn(page, proxy.url, proxy.apiKey);
    // The search is applied on the server, to the list and to the live feed alike.
    const searchedFeed = page.waitForRequest(
      (request) => new URL(request.url()).pathname === '/events' && request.url().includes(encodeURIComponent(label)),
    );
    await page.getByRole('searchbox').fill(label);
    await searchedFeed;
    const row = `[data-key-id="${key.key_id}"]`;
    await expect.poll(() => page.locator(row).count(), UPDATE).toBe(1);
    expect(await page.locator(`[data-label="${label}"]`).count()).toBe(1);
    expect(await numberAttribute(page, `${row} .spend-bar`, 'data-spent')).toBe(0);
    await markDocument(page);
    await waitLive(page);

    await fanOut(proxy, key.vault_key, 50);
    await expect.poll(() => numberAttribute(page, `${row} .spend-bar`, 'data-spent'), UPDATE).toBe(50);
    await expect.poll(() => page.locator(`${row} [data-field="calls"]`).textContent(), UPDATE).toBe('50');
    expect(await numberAttribute(page, `${row} .spend-bar`, 'data-cap')).toBe(500);
    expect(await sameDocument(page)).toBe(true);

    // The execution view, opened from the list, follows a second fan-out the same way.
    await page.locator(`${row} a`).first().click();
    await expect.poll(() => page.locator('[data-field="call-count"]').textContent(), UPDATE).toBe('50');
    await waitLive(page);
    await fanOut(proxy, key.vault_key, 20);
    await expect.poll(() => page.locator('[data-field="call-count"]').textContent(), UPDATE).toBe('70');
    await expect.poll(() => numberAttribute(page, '.summary .spend-bar', 'data-spent'), UPDATE).toBe(70);
    await expect.poll(() => numberAttribute(page, '.spend-chart', 'data-points'), UPDATE).toBe(70);
    // The table pages: 50 newest on the first page, the rest on the next.
    expect(await page.locator('table.calls tbody tr').count()).toBe(50);
    const calls = (await (await proxy.admin(`/vault/keys/${key.key_id}/calls`)).json()) as {
      calls: { seq: number; vendor_request_id: string | null }[];
    };
    const newest = calls.calls.at(-1)!;
    expect(await page.locator('table.calls tbody tr').first().getAttribute('data-seq')).toBe(String(newest.seq));
    expect(await page.locator('table.calls tbody tr').first().textContent()).toContain(newest.vendor_request_id);
    await page.getByRole('button', { name: 'Older' }).click();
    expect(await page.locator('table.calls tbody tr').count()).toBe(20);
    expect(await sameDocument(page)).toBe(true);
    await closeTab(tab, proxy);
  });

  test('revoking in the UI, after a confirmation, makes the next proxied call answer 401 vault_key_revoked', async () => {
    const key = await proxy.issueKey(stripeKeyBody(`console-test/${store}/revoke-${randomUUID()}`));
    const stripe = stripeThrough(proxy, key.vault_key);
    await stripe.paymentIntents.create({ amount: 100, currency: 'usd' });
    const tab = await openTab(browser);
    const { page } = tab;
    await signIn(page, proxy.url, proxy.apiKey);
    await page.evaluate((id) => (location.hash = `#/keys/${id}`), key.key_id);
    await expect
      .poll(() => page.locator('.execution-head [data-status]').getAttribute('data-status'), UPDATE)
      .toBe('active');

    // Cancelling the dialog changes nothing.
    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    await expect.poll(() => page.getByRole('dialog').count()).toBe(0);
    await stripe.paymentIntents.create({ amount: 100, currency: 'usd' });

    await page.getByRole('button', { name: 'Revoke' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Revoke' }).click();
    await expect
      .poll(() => page.locator('.execution-head [data-status]').getAttribute('data-status'), UPDATE)
      .toBe('revoked');
    const refused = await fetch(`${proxy.url}/stripe/v1/payment_intents`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: 'amount=100&currency=usd',
    });
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe('vault_key_revoked');
    // The refusal shows up in the calls table, live.
    await expect
      .poll(() => page.locator('table.calls tbody tr').first().textContent(), UPDATE)
      .toContain('vault_key_revoked');
    await closeTab(tab, proxy);
  });

  test('tainting in the UI makes the next money-moving call answer 403 tainted_request_refused', async () => {
    const key = await proxy.issueKey(stripeKeyBody(`console-test/${store}/taint-${randomUUID()}`));
    const tab = await openTab(browser);
    const { page } = tab;
    await signIn(page, proxy.url, proxy.apiKey);
    await page.evaluate((id) => (location.hash = `#/keys/${id}`), key.key_id);
    await page.getByRole('button', { name: 'Taint' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Taint' }).click();
    await expect.poll(() => page.locator('.execution-head .badge.tainted').count(), UPDATE).toBe(1);
    const error = await stripeThrough(proxy, key.vault_key)
      .paymentIntents.create({ amount: 100, currency: 'usd' })
      .then(
        () => null,
        (caught: Stripe.errors.StripeError) => caught,
      );
    expect(error?.statusCode).toBe(403);
    expect(error?.code ?? (error?.raw as { code?: string } | undefined)?.code).toBe('tainted_request_refused');
    await closeTab(tab, proxy);
  });

  test('the execution view shows the family tree: parent, children and tainted children', async () => {
    const label = `console-test/${store}/family-${randomUUID()}`;
    const parent = await proxy.issueKey(stripeKeyBody(label));
    const child = await proxy.issueKey(stripeKeyBody(label, { parent_key_id: parent.key_id, usd_cap: 50 }));
    const tainted = await proxy.issueKey(
      stripeKeyBody(label, { parent_key_id: parent.key_id, usd_cap: 50, tainted: true }),
    );
    const tab = await openTab(browser);
    const { page } = tab;
    await signIn(page, proxy.url, proxy.apiKey);
    await page.evaluate((id) => (location.hash = `#/keys/${id}`), child.key_id);
    // From a child: its parent above, and (from the parent down) both children.
    await expect.poll(() => page.locator(`.family [data-key-id="${parent.key_id}"]`).count(), UPDATE).toBe(1);
    await page.locator(`.family a`, { hasText: parent.key_id }).click();
    await expect
      .poll(() => page.locator(`.family [data-key-id="${tainted.key_id}"] .badge.tainted`).count(), UPDATE)
      .toBe(1);
    expect(await page.locator(`.family [data-key-id="${child.key_id}"]`).count()).toBe(1);
    await closeTab(tab, proxy);
  });

  test('the audit view verifies the chain, shows the latest signed checkpoint, and downloads the export through fetch', async () => {
    const key = await proxy.issueKey(stripeKeyBody(`console-test/${store}/audit-${randomUUID()}`));
    await fanOut(proxy, key.vault_key, 3);
    const signed = await proxy.admin('/audit/checkpoints', { method: 'POST' });
    expect([200, 201]).toContain(signed.status);
    const { checkpoint } = (await signed.json()) as { checkpoint: { records: number } };
    const tab = await openTab(browser);
    const { page } = tab;
    await signIn(page, proxy.url, proxy.apiKey);
    await page.getByRole('link', { name: 'Audit' }).click();
    await expect.poll(() => page.locator('[data-verified]').getAttribute('data-verified'), UPDATE).toBe('true');
    const verified = (await (await proxy.admin('/audit/verify')).json()) as { records: number; head: string };
    expect(verified.records).toBeGreaterThanOrEqual(3);
    expect(await page.locator('[data-field="head"]').textContent()).toMatch(/^[0-9a-f]{64}$/);
    expect(await page.locator('[data-field="checkpoint-records"]').textContent()).toBe(
      checkpoint.records.toLocaleString('en-US'),
    );
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download export' }).click(),
    ]);
    const lines = readFileSync((await download.path()) as string, 'utf8')
      .trim()
      .split('\n');
    const types = lines.map((line) => (JSON.parse(line) as { type?: string }).type);
    expect(types[0]).toBe('keybrake.audit.export');
    expect(types.filter((type) => type === 'record').length).toBeGreaterThanOrEqual(verified.records);
    // No URL ever carried the issuer key: the export came through fetch and a Blob.
    expect(tab.network.exchanges.some((e) => new URL(e.url).pathname === '/audit/export')).toBe(true);
    await closeTab(tab, proxy);
  });
});
