import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  json,
  rawRequest,
  sendJson,
  startFakeVendor,
  startProxy,
  type ReceivedRequest,
  type TestProxy,
} from './helpers.js';

/** Issue 16, part 3, each example on both stores, against a fake vendor of our own that records what reached it. */
describe('issue 16: smaller holes (fake vendor)', () => {
  async function setup(
    env: Record<string, string> = {},
    answer: (request: ReceivedRequest) => Promise<void> | void = () => undefined,
  ): Promise<{ proxy: TestProxy; received: ReceivedRequest[] }> {
    const vendor = await startFakeVendor(async (request, response) => {
      await answer(request);
      const amount = Number(new URLSearchParams(request.body).get('amount') ?? 0);
      sendJson(response, 200, { id: 'pi_fake', amount, currency: 'usd' }, { 'request-id': 'req_fake' });
    });
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, ...env } });
    return { proxy, received: vendor.received };
  }

  const form = 'application/x-www-form-urlencoded';

  async function stripeKey(
    proxy: TestProxy,
    fields: Record<string, unknown> = {},
  ): Promise<{ key_id: string; vault_key: string }> {
    return proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 10,
      allowed_endpoints: ['POST /v1/*', 'GET /v1/customers'],
      ...fields,
    });
  }

  /**
   * A POST sent as it is written (a header given as an array goes out as that many headers), with
   * the key and a form Content-Type unless `headers` says otherwise.
   */
  function rawPost(
    proxy: TestProxy,
    key: { vault_key: string },
    path: string,
    headers: Record<string, string | string[]>,
    body: string,
  ): ReturnType<typeof rawRequest> {
    return rawRequest(
      proxy.url,
      'POST',
      path,
      { authorization: `Bearer ${key.vault_key}`, 'content-type': form, ...headers } as Record<string, string>,
      body,
    );
  }

  /** A refusal read by `rawRequest`: its status and `error.code`. */
  function expectRawRefusal(response: { status: number; body: string }, status: number, code: string): void {
    expect(response.status).toBe(status);
    expect(JSON.parse(response.body).error.code).toBe(code);
  }

  describe('_method is refused wherever a framework reads it', () => {
    const cases: [string, string, Record<string, string>, string | undefined][] = [
      ['in a form body', '/stripe/v1/customers', { 'content-type': form }, 'name=x&_method=DELETE'],
      ['in the query, another case', '/stripe/v1/customers?_Method=DELETE', { 'content-type': form }, 'name=x'],
      ['in a JSON body', '/stripe/v1/customers', { 'content-type': 'application/json' }, '{"_method":"DELETE"}'],
      ['in a form body, nested', '/stripe/v1/customers', { 'content-type': form }, '_METHOD[x]=DELETE'],
      ['naming the real method', '/stripe/v1/customers?_method=POST', { 'content-type': form }, 'name=x'],
    ];
    for (const [where, path, headers, body] of cases) {
      it(`${where}: 403 endpoint_not_allowed, nothing forwarded`, async () => {
        const { proxy, received } = await setup();
        const key = await stripeKey(proxy);
        const response = await proxy.call(path, {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, ...headers },
          body,
        });
        expect(response.status).toBe(403);
        expect((await json(response)).error.code).toBe('endpoint_not_allowed');
        expect(received).toEqual([]);
      });
    }

    it('a parameter that merely ends in "_method" (payment_method) is forwarded', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy);
      const response = await proxy.call('/stripe/v1/customers?expand[]=invoice_settings.default_payment_method', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form },
        body: 'payment_method=pm_card_visa',
      });
      expect(response.status).toBe(200);
      expect(received).toHaveLength(1);
    });

    it('a compressed body to a free endpoint is refused (415): it could hide a _method', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy);
      const response = await proxy.call('/stripe/v1/customers', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form, 'content-encoding': 'gzip' },
        body: gzipSync('_method=DELETE'),
      });
      expect(response.status).toBe(415);
      expect((await json(response)).error.code).toBe('unsupported_media_type');
      expect(received).toEqual([]);
    });
  });

  it('headers named in Connection, and HTTP2-Settings, are not forwarded', async () => {
    const { proxy, received } = await setup();
    const key = await stripeKey(proxy);
    const response = await rawRequest(
      proxy.url,
      'POST',
      '/stripe/v1/customers',
      {
        authorization: `Bearer ${key.vault_key}`,
        'content-type': form,
        connection: 'close, X-Foo',
        'x-foo': 'hop',
        'x-bar': 'end-to-end',
        'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA',
      },
      'name=x',
    );
    expect(response.status).toBe(200);
    expect(received).toHaveLength(1);
    expect(received[0]?.headers['x-foo']).toBeUndefined();
    expect(received[0]?.headers['http2-settings']).toBeUndefined();
    expect(received[0]?.headers['x-bar']).toBe('end-to-end');
  });

  it('Connection may not make a header the vendor must see hop-by-hop (400)', async () => {
    const { proxy, received } = await setup();
    const key = await stripeKey(proxy);
    const response = await rawPost(
      proxy,
      key,
      '/stripe/v1/payment_intents',
      { connection: 'close, Content-Type' },
      'amount=100&currency=usd',
    );
    expectRawRefusal(response, 400, 'invalid_request');
    expect(received).toEqual([]);
  });

  describe('Stripe-Account and Stripe-Version', () => {
    it('Stripe-Account (and Stripe-Context) are refused: a key acts on the proxy account only', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy);
      for (const header of ['stripe-account', 'stripe-context']) {
        const response = await proxy.call('/stripe/v1/customers', {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form, [header]: 'acct_1Other' },
          body: 'name=x',
        });
        expect(response.status).toBe(403);
        expect((await json(response)).error.code).toBe('endpoint_not_allowed');
      }
      expect(received).toEqual([]);
    });

    it('one well-formed Stripe-Version is forwarded; two, or a malformed one, are refused', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy);
      const send = (version: string | string[]) =>
        rawPost(proxy, key, '/stripe/v1/customers', { 'stripe-version': version }, 'name=x');
      expect((await send('2025-03-31.basil')).status).toBe(200);
      expect(received[0]?.headers['stripe-version']).toBe('2025-03-31.basil');
      for (const bad of [['2024-06-20', '2020-08-27'], 'latest, 2020-08-27', '2024-06-20x', 'latest']) {
        const response = await send(bad);
        expect(response.status, String(bad)).toBe(400);
        expect(JSON.parse(response.body).error.code).toBe('invalid_request');
      }
      expect(received).toHaveLength(1);
    });
  });

  describe('costed paths are matched the way the vendor routes them', () => {
    for (const path of ['/v1/PAYMENT_INTENTS', '/v1/Charges', '/v1/payment_intents%20', '/v1/charges.json']) {
      it(`POST ${path} with a wildcard allowlist is priced like the canonical path (cap hit)`, async () => {
        const { proxy, received } = await setup();
        const key = await stripeKey(proxy);
        const response = await rawPost(proxy, key, `/stripe${path}`, {}, 'amount=100000&currency=usd');
        expectRawRefusal(response, 429, 'cap_exhausted');
        expect(received).toEqual([]);
      });
    }

    it('a tainted key cannot reach POST /v1/Payment_Intents, and still reaches a free endpoint', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy, { tainted: true });
      const charge = await proxy.call('/stripe/v1/Payment_Intents', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form },
        body: 'amount=100000&currency=usd',
      });
      expect(charge.status).toBe(403);
      expect((await json(charge)).error.code).toBe('tainted_request_refused');
      expect(received).toEqual([]);
      const read = await proxy.call('/stripe/v1/customers', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form },
        body: 'name=x',
      });
      expect(read.status).toBe(200);
      expect(received).toHaveLength(1);
    });
  });

  describe('X-Keybrake-Provenance fails closed', () => {
    const tainting: [string, string | string[]][] = [
      ['untrusted', 'untrusted'],
      ['a parameter after the value', 'untrusted; src=email'],
      ['two headers', ['untrusted', 'untrusted']],
      ['two headers saying trusted', ['trusted', 'trusted']],
      ['an empty value', ''],
      ['an unknown value', 'maybe'],
    ];
    for (const [what, value] of tainting) {
      it(`${what}: tainted, so a charge is refused`, async () => {
        const { proxy, received } = await setup();
        const key = await stripeKey(proxy);
        const response = await rawPost(
          proxy,
          key,
          '/stripe/v1/payment_intents',
          { 'x-keybrake-provenance': value },
          'amount=100&currency=usd',
        );
        expectRawRefusal(response, 403, 'tainted_request_refused');
        expect(received).toEqual([]);
        const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
        expect(calls.at(-1)).toMatchObject({ outcome: 'blocked', tainted: true });
      });
    }

    it('"trusted" or no header at all: the charge goes through', async () => {
      const { proxy, received } = await setup();
      const key = await stripeKey(proxy);
      for (const headers of [{ 'x-keybrake-provenance': 'trusted' }, {}] as Record<string, string>[]) {
        const response = await proxy.call('/stripe/v1/payment_intents', {
          method: 'POST',
          headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form, ...headers },
          body: 'amount=100&currency=usd',
        });
        expect(response.status).toBe(200);
      }
      expect(received).toHaveLength(2);
    });
  });

  it('two Idempotency-Key headers are refused (400), not joined into "D1, D2"', async () => {
    const { proxy, received } = await setup();
    const key = await stripeKey(proxy);
    const response = await rawPost(
      proxy,
      key,
      '/stripe/v1/payment_intents',
      { 'idempotency-key': ['D1', 'D2'] },
      'amount=100&currency=usd',
    );
    expectRawRefusal(response, 400, 'invalid_request');
    expect(received).toEqual([]);
  });

  describe('request timeouts', () => {
    it('a body trickled one byte at a time is cut off with 408 request_timeout; nothing is forwarded', async () => {
      const { proxy, received } = await setup({
        KEYBRAKE_REQUEST_TIMEOUT_MS: '1500',
        KEYBRAKE_HEADERS_TIMEOUT_MS: '1000',
      });
      const key = await stripeKey(proxy);
      const body = 'amount=100&currency=usd&description=' + 'x'.repeat(500);
      const { port } = new URL(proxy.url);
      const socket = connect(Number(port), '127.0.0.1');
      const chunks: Buffer[] = [];
      let sent = 0;
      const closed = new Promise<void>((resolve) => {
        socket.on('data', (chunk: Buffer) => chunks.push(chunk));
        socket.on('close', () => resolve());
        socket.on('error', () => resolve());
      });
      socket.write(
        `POST /stripe/v1/payment_intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key.vault_key}\r\n` +
          `Content-Type: ${form}\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      // One byte every 100 ms would take over 50 s: the proxy must not wait for it.
      const trickle = setInterval(() => {
        if (sent < body.length && !socket.destroyed) socket.write(body[sent++] as string);
      }, 100);
      await closed;
      clearInterval(trickle);
      expect(sent).toBeLessThan(body.length);
      console.log(
        `[figures] trickled body: cut after ${sent} of ${body.length} bytes (one every 100 ms, request timeout 1.5 s)`,
      );
      const answer = Buffer.concat(chunks).toString();
      expect(answer).toMatch(/^HTTP\/1\.1 408/);
      expect(answer).toContain('"code":"request_timeout"');
      expect(received).toEqual([]);
      expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.reserved_usd).toBe(0);
    });

    it('a vendor slower than the request timeout still answers: the timeout ends when the request is in', async () => {
      const { proxy, received } = await setup(
        { KEYBRAKE_REQUEST_TIMEOUT_MS: '500', KEYBRAKE_HEADERS_TIMEOUT_MS: '500' },
        () => new Promise((resolve) => setTimeout(resolve, 2000)),
      );
      const key = await stripeKey(proxy);
      const response = await proxy.call('/stripe/v1/payment_intents', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': form },
        body: 'amount=100&currency=usd',
      });
      expect(response.status).toBe(200);
      expect(received).toHaveLength(1);
      expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(1);
    });
  });

  describe('agent_run_label refuses characters that spoof a display', () => {
    for (const [name, char] of [
      ['U+202E right-to-left override', '\u202E'],
      ['U+202A left-to-right embedding', '\u202A'],
      ['U+2066 left-to-right isolate', '\u2066'],
      ['U+2069 pop directional isolate', '\u2069'],
      ['U+2028 line separator', '\u2028'],
      ['U+2029 paragraph separator', '\u2029'],
      ['U+200B zero-width space', '\u200B'],
      ['U+0085 next line', '\u0085'],
      ['a lone surrogate', '\uD800'],
    ] as const) {
      it(`${name}: 400 invalid_request`, async () => {
        const { proxy } = await setup();
        const response = await proxy.admin('POST', '/vault/keys', {
          vendor: 'stripe',
          usd_cap: 1,
          allowed_endpoints: ['POST /v1/charges'],
          expires_in: '1h',
          agent_run_label: `argo/run-${char}gpj.exe`,
        });
        expect(response.status).toBe(400);
        expect(response.body.error.code).toBe('invalid_request');
      });
    }

    it('letters, digits, punctuation and emoji of any script are still accepted', async () => {
      const { proxy } = await setup();
      const key = await proxy.issueKey({
        vendor: 'stripe',
        usd_cap: 1,
        allowed_endpoints: ['POST /v1/charges'],
        agent_run_label: `argo/über-агент-代理-😀 ${randomUUID()}`,
      });
      expect(key.agent_run_label).toMatch(/^argo\/über-агент-代理-😀 /);
    });
  });
});
