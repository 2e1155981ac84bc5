import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, type CDPSession, type Page, chromium } from 'playwright-core';
import { expect, inject } from 'vitest';
import { newSecrets } from '../../core-proxy/test/helpers.js';
import { type ServerProcess, spawnServer } from '../../core-proxy/test/server-process.js';

/** The two stores the console is tested on. */
export type StoreKind = 'embedded' | 'redis';

/** A real `keybrake serve` with stripe-mock upstream, on one store. */
export interface ConsoleProxy {
  readonly url: string;
  readonly apiKey: string;
  /** The vendor secrets it was started with (to search the browser's every byte for). */
  readonly secrets: readonly string[];
  /** Every vault key issued through {@link issueKey}, to search for too. */
  readonly vaultKeys: string[];
  readonly server: ServerProcess;
  issueKey(body: Record<string, unknown>): Promise<{ key_id: string; vault_key: string }>;
  admin(path: string, init?: RequestInit): Promise<Response>;
  stop(): Promise<void>;
}

/** Starts `keybrake serve` (the built CLI) on `store`, with fresh secrets and an issuer key. */
export async function startConsoleProxy(
  store: StoreKind,
  extraEnv: Record<string, string> = {},
): Promise<ConsoleProxy> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keybrake-console-'));
  const secretsByName = newSecrets();
  const apiKey = `kb_admin_${randomUUID()}`;
  const env: Record<string, string> = {
    ...secretsByName,
    KEYBRAKE_API_KEYS: apiKey,
    KEYBRAKE_DATA_DIR: dataDir,
    KEYBRAKE_STRIPE_BASE_URL: inject('stripeMockUrl'),
    ...(store === 'redis'
      ? { KEYBRAKE_REDIS_URL: inject('redisUrl'), KEYBRAKE_REDIS_PREFIX: `c:${randomUUID()}:` }
      : {}),
    ...extraEnv,
  };
  const server = await spawnServer(env);
  const vaultKeys: string[] = [];
  const admin = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json', ...init.headers },
    });
  return {
    url: server.url,
    apiKey,
    secrets: Object.values(secretsByName),
    vaultKeys,
    server,
    admin,
    async issueKey(body) {
      const response = await admin('/vault/keys', { method: 'POST', body: JSON.stringify(body) });
      expect(response.status, await response.clone().text()).toBe(201);
      const issued = (await response.json()) as { key_id: string; vault_key: string };
      vaultKeys.push(issued.vault_key);
      return issued;
    },
    async stop() {
      if (server.child.exitCode === null) {
        server.child.kill('SIGTERM');
        await server.exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Debian's chromium, launched as the issue says: headless, no sandbox (root in CI), no GPU, no background traffic. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: inject('chromiumPath'),
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/** One request the page made, and what came back. */
export interface LoggedExchange {
  readonly url: string;
  readonly method: string;
  readonly requestHeaders: Record<string, string>;
  status?: number;
  responseHeaders?: Record<string, string>;
  body?: string;
}

/**
 * Everything the page sends and receives: every request's URL and headers, every response's
 * headers and body, and the bytes of streamed (Server-Sent Events) responses, read through the
 * DevTools protocol as they arrive since such a response never ends.
 */
export class NetworkLog {
  readonly exchanges: LoggedExchange[] = [];
  readonly streamed: string[] = [];
  readonly #pending: Promise<unknown>[] = [];
  #cdp: CDPSession | undefined;

  async attach(context: BrowserContext, page: Page): Promise<void> {
    context.on('request', (request) => {
      const exchange: LoggedExchange = { url: request.url(), method: request.method(), requestHeaders: {} };
      this.exchanges.push(exchange);
      this.#pending.push(
        request
          .allHeaders()
          .then((headers) => Object.assign(exchange.requestHeaders, headers))
          .catch(() => undefined),
      );
      this.#pending.push(
        request
          .response()
          .then(async (response) => {
            if (!response) return;
            exchange.status = response.status();
            exchange.responseHeaders = await response.allHeaders();
            if ((exchange.responseHeaders['content-type'] ?? '').startsWith('text/event-stream')) return;
            exchange.body = (await response.body()).toString('utf8');
          })
          .catch(() => undefined),
      );
    });
    const cdp = await context.newCDPSession(page);
    this.#cdp = cdp;
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', (event) => {
      if (!event.response.mimeType.startsWith('text/event-stream')) return;
      this.#pending.push(
        cdp
          .send('Network.streamResourceContent', { requestId: event.requestId })
          .then((result) => this.streamed.push(Buffer.from(result.bufferedData, 'base64').toString('utf8')))
          .catch(() => undefined),
      );
    });
    cdp.on('Network.dataReceived', (event) => {
      if (event.data) this.streamed.push(Buffer.from(event.data, 'base64').toString('utf8'));
    });
  }

  /** Waits for the headers and bodies still being read. */
  async settle(): Promise<void> {
    for (let done = 0; done < this.#pending.length;) {
      const batch = this.#pending.slice(done);
      done += batch.length;
      await Promise.all(batch);
    }
  }

  async detach(): Promise<void> {
    await this.#cdp?.detach().catch(() => undefined);
  }
}

/** Records every Content-Security-Policy violation the page reports, from before its first script. */
export async function recordCspViolations(context: BrowserContext): Promise<void> {
  await context.addInitScript(() => {
    const violations: string[] = [];
    (window as unknown as { cspViolations: string[] }).cspViolations = violations;
    document.addEventListener('securitypolicyviolation', (event) =>
      violations.push(`${event.violatedDirective} ${event.blockedURI}`),
    );
  });
}

/** The violations {@link recordCspViolations} saw. */
export function cspViolations(page: Page): Promise<string[]> {
  return page.evaluate(() => (window as unknown as { cspViolations: string[] }).cspViolations);
}

/** Opens the console and signs in with `issuerKey`. */
export async function signIn(page: Page, proxyUrl: string, issuerKey: string): Promise<void> {
  await page.goto(`${proxyUrl}/console/`);
  await page.getByLabel('Issuer key').fill(issuerKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** A number from an element's attribute, polled by `expect.poll`. */
export async function numberAttribute(page: Page, selector: string, attribute: string): Promise<number> {
  const value = await page
    .locator(selector)
    .first()
    .getAttribute(attribute, { timeout: 1000 })
    .catch(() => null);
  return value === null ? Number.NaN : Number(value);
}
