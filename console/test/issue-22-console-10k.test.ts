import { randomUUID } from 'node:crypto';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { type ConsoleProxy, launchChromium, signIn, startConsoleProxy } from './console-harness.js';

const KEYS = 10_000;
const LABELS = 100;
const UPDATE = { timeout: 120_000, interval: 250 };

/** Issues `count` keys, `concurrency` at a time, spread over `LABELS` run labels under `prefix`. */
async function issueMany(proxy: ConsoleProxy, prefix: string, count: number, concurrency = 16): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      const index = next++;
      const response = await proxy.admin('/vault/keys', {
        method: 'POST',
        body: JSON.stringify({
          vendor: 'stripe',
          usd_cap: 10 + (index % 90),
          allowed_endpoints: ['POST /v1/payment_intents'],
          expires_in: '2h',
          agent_run_label: `${prefix}${String(index % LABELS).padStart(2, '0')}`,
        }),
      });
      expect(response.status).toBe(201);
      await response.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

// The embedded store only: issuing 10,000 keys twice would double the project's time, and the
// listing's behaviour on Redis is i22-api's own 10,000-key test.
describe('issue 22: the keys view stays usable with 10,000 keys (embedded store)', () => {
  let proxy: ConsoleProxy;
  let browser: Browser;
  const prefix = `bulk/${randomUUID()}/`;

  beforeAll(async () => {
    [proxy, browser] = await Promise.all([startConsoleProxy('embedded'), launchChromium()]);
    await issueMany(proxy, prefix, KEYS);
  }, 600_000);

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
  });

  test('pages come from the server as the list scrolls, the DOM holds only a window of rows, and search is server-side', async () => {
    const context = await browser.newContext({ locale: 'en-US' });
    const page = await context.newPage();
    const listings: URL[] = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname === '/vault/keys') listings.push(url);
    });
    await signIn(page, proxy.url, proxy.apiKey);
    await page.getByRole('searchbox').fill(prefix);
    const footer = page.locator('.list-foot');
    // The searched list (not the unfiltered one shown before the search applies) is the one loaded.
    await expect
      .poll(() => page.locator('.group-row').first().getAttribute('data-label'), UPDATE)
      .toMatch(new RegExp(`^${prefix}`));
    await expect.poll(() => footer.textContent(), UPDATE).toMatch(/^200 keys loaded · scroll for more/);
    const firstPages = listings.length;
    // No request ever asks for everything: each is a page of at most 500.
    for (const url of listings) expect(Number(url.searchParams.get('limit'))).toBeLessThanOrEqual(500);

    // Scroll to the end, page after page, until the server says there is no more.
    const list = page.locator('.windowed');
    for (let i = 0; i < 400; i += 1) {
      if ((await footer.textContent()) === `${KEYS} keys loaded`) break;
      await list.evaluate((element) => element.scrollTo(0, element.scrollHeight));
      await page.waitForTimeout(100);
    }
    expect(await footer.textContent()).toBe(`${KEYS} keys loaded`);
    expect(listings.length).toBeGreaterThan(firstPages + 10);
    // Once the search applied, every further page was asked of the server with it as the filter.
    const searched = listings.findIndex((url) => url.searchParams.get('label_prefix') === prefix);
    const further = listings.slice(searched).filter((url) => url.searchParams.has('cursor'));
    expect(further.length).toBeGreaterThan(10);
    for (const url of further) expect(url.searchParams.get('label_prefix')).toBe(prefix);
    // Only a window of the 10,000 keys (and their 100 group headers) is in the DOM; the list holds
    // each key once (it keeps one row per key id), so 10,100 rows means none missing.
    const rendered = await page.locator('.windowed-row').count();
    expect(rendered).toBeGreaterThan(10);
    expect(rendered).toBeLessThan(120);
    expect(await list.getAttribute('data-rows')).toBe(String(KEYS + LABELS));
    // Search narrows on the server: one run label's 100 keys.
    const label = `${prefix}42`;
    const before = listings.length;
    await page.getByRole('searchbox').fill(label);
    await expect.poll(() => footer.textContent(), UPDATE).toBe(`${KEYS / LABELS} keys loaded`);
    expect(listings.slice(before).some((url) => url.searchParams.get('label_prefix') === label)).toBe(true);
    const groups = await page
      .locator('.group-row')
      .evaluateAll((rows) => rows.map((row) => row.getAttribute('data-label')));
    expect(groups).toEqual([label]);
    await context.close();
  });
});
