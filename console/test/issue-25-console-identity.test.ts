import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { issuersFile, jwksFile, newSigningKey, signToken } from '../../core-proxy/test/workload-tokens.js';
import { type ConsoleProxy, launchChromium, signIn, startConsoleProxy } from './console-harness.js';

/**
 * Issue 25: the console's key page says who a key was issued to. The workload's token is one the
 * test signs itself against a static JWKS file (no Kubernetes API server runs here).
 */
const ISSUER = 'https://kubernetes.default.svc.cluster.local';
const UPDATE = { timeout: 90_000, interval: 200 };

describe('issue 25: the console shows the identity a key was issued to (static JWKS token: no API server runs here)', () => {
  const key = newSigningKey();
  let proxy: ConsoleProxy;
  let browser: Browser;

  beforeAll(async () => {
    const jwks = jwksFile([key]);
    const file = issuersFile({
      issuers: [{ issuer: ISSUER, jwks_file: jwks.path, audiences: ['keybrake'], algorithms: ['RS256'] }],
      policies: [
        {
          name: 'argo-billing',
          match: { iss: ISSUER, sub: 'system:serviceaccount:argo:*' },
          grant: { vendors: ['stripe'] },
        },
      ],
    });
    [proxy, browser] = await Promise.all([
      startConsoleProxy('embedded', { KEYBRAKE_ISSUERS_FILE: file }),
      launchChromium(),
    ]);
  });

  afterAll(async () => {
    await browser?.close();
    await proxy?.stop();
  });

  test("a workload's key names its subject, issuer and policy; an operator's says so; the token is nowhere", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = signToken(key, {
      iss: ISSUER,
      sub: 'system:serviceaccount:argo:billing-agent',
      aud: 'keybrake',
      iat: now,
      exp: now + 3600,
    });
    const issued = await fetch(`${proxy.url}/vault/keys`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        vendor: 'stripe',
        usd_cap: 5,
        expires_in: '1h',
        allowed_endpoints: ['POST /v1/payment_intents'],
        agent_run_label: 'argo/billing/run-1',
      }),
    });
    expect(issued.status).toBe(201);
    const workloadKey = (await issued.json()) as { key_id: string; vault_key: string };
    proxy.vaultKeys.push(workloadKey.vault_key);
    const operatorKey = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 5,
      expires_in: '1h',
      allowed_endpoints: ['POST /v1/payment_intents'],
    });

    const context = await browser.newContext();
    const page = await context.newPage();
    await signIn(page, proxy.url, proxy.apiKey);
    await page.goto(`${proxy.url}/console/#/keys/${workloadKey.key_id}`);
    const identity = page.locator('[data-field="identity"]');
    await expect
      .poll(async () => identity.textContent({ timeout: 1000 }).catch(() => null), UPDATE)
      .toBe(`issued to: system:serviceaccount:argo:billing-agent (${ISSUER}, policy argo-billing)`);
    await page.goto(`${proxy.url}/console/#/keys/${operatorKey.key_id}`);
    await expect
      .poll(
        async () =>
          page
            .locator(`[data-key-id="${operatorKey.key_id}"] [data-field="identity"]`)
            .textContent({ timeout: 1000 })
            .catch(() => null),
        UPDATE,
      )
      .toBe('issued to: an issuer key (operator)');
    const dom = await page.evaluate(() => document.documentElement.outerHTML);
    expect(dom).not.toContain(token.split('.')[2]);
    await context.close();
  });
});
