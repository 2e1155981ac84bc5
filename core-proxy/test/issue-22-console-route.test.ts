import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import { startProxy } from './helpers.js';

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
  "base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/** What `pnpm build` put in core-proxy/dist/console (the suite runs after the build). */
const BUILT = fileURLToPath(new URL('../dist/console/', import.meta.url));

function builtAsset(extension: string): string {
  const name = readdirSync(`${BUILT}assets`).find((file) => file.endsWith(extension));
  if (!name) throw new Error(`no built ${extension} in ${BUILT}assets: run pnpm build`);
  return `/console/assets/${name}`;
}

function expectSecurityHeaders(response: Response): void {
  expect(response.headers.get('content-security-policy')).toBe(CSP);
  expect(response.headers.get('x-content-type-options')).toBe('nosniff');
  expect(response.headers.get('referrer-policy')).toBe('no-referrer');
}

describe('issue 22: the console is served at /console', () => {
  test('the page and its hashed assets, with the strict CSP and the right cache headers', async () => {
    expect(existsSync(`${BUILT}index.html`)).toBe(true);
    const proxy = await startProxy();
    const bare = await fetch(`${proxy.url}/console`, { redirect: 'manual' });
    expect(bare.status).toBe(308);
    expect(bare.headers.get('location')).toBe('/console/');
    expectSecurityHeaders(bare);

    const page = await fetch(`${proxy.url}/console/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('cache-control')).toBe('no-cache');
    expectSecurityHeaders(page);
    const html = await page.text();
    // The strict CSP would refuse inline code: the page must not need any.
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style|\sstyle=/);
    expect(html).toContain(builtAsset('.js'));

    const etag = page.headers.get('etag');
    expect(etag).toMatch(/^"[\w-]+"$/);
    const revalidated = await fetch(`${proxy.url}/console/`, { headers: { 'if-none-match': etag! } });
    expect(revalidated.status).toBe(304);

    for (const [asset, type] of [
      [builtAsset('.js'), 'text/javascript; charset=utf-8'],
      [builtAsset('.css'), 'text/css; charset=utf-8'],
    ] as const) {
      const response = await fetch(`${proxy.url}${asset}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(type);
      expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
      expectSecurityHeaders(response);
    }
  });

  test('no path leaves the built folder: traversal and unknown files are 404 in the contract shape', async () => {
    const proxy = await startProxy();
    for (const path of [
      '/console/../package.json',
      '/console/%2e%2e/package.json',
      '/console/assets/..%2F..%2Fcli.js',
      '/console/..%2f..%2fpackage.json',
      '/console/%2e%2e%2f%2e%2e%2fcli.js',
      '/console/assets/%2e%2e/%2e%2e/cli.js',
      '/console//etc/passwd',
      '/console/%00',
      '/console/assets/',
      '/console/nope.js',
    ]) {
      const response = await fetch(`${proxy.url}${path}`);
      // fetch normalizes a literal `..` away; what reaches the route is whatever is left.
      expect([404, 400], path).toContain(response.status);
      const body = (await response.json()) as { error: { code: string } };
      expect(['not_found', 'invalid_request'], path).toContain(body.error.code);
    }
    const raw = await fetch(`${proxy.url}/console/%2e%2e%2f%2e%2e%2fcli.js`);
    expect(raw.status).toBe(404);
    expectSecurityHeaders(raw);
  });

  test('KEYBRAKE_CONSOLE=off serves nothing at /console', async () => {
    const proxy = await startProxy({ env: { KEYBRAKE_CONSOLE: 'off' } });
    for (const path of ['/console', '/console/', builtAsset('.js')]) {
      const response = await fetch(`${proxy.url}${path}`, { redirect: 'manual' });
      expect(response.status, path).toBe(404);
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    // The rest of the proxy is unchanged.
    expect((await fetch(`${proxy.url}/healthz`)).status).toBe(200);
  });

  test('KEYBRAKE_CONSOLE takes on or off, nothing else', async () => {
    await expect(startProxy({ env: { KEYBRAKE_CONSOLE: 'maybe' } })).rejects.toThrow(
      /KEYBRAKE_CONSOLE must be on or off/,
    );
  });
});
