import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { sendJson, startFakeVendor, startProxy } from './helpers.js';

/**
 * A path and request-line fuzzer on the proxy, over raw sockets (an HTTP client would normalise or
 * refuse most of these). Every request carries a valid vault key whose allowlist is
 * `POST /v1/payment_intents` and `GET /v1/customers/*`, and tries to reach something else through
 * traversal in every encoding, absolute-URI targets, Host and rewrite headers, method overrides,
 * CRLF and oversized heads and bodies. The fake vendor logs what it receives: everything it
 * receives must be on the allowlist, and the proxy itself never answers 5xx.
 */

/** Deterministic choices, so a failing case can be replayed from its number. */
function* choices(seed: number): Generator<number> {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    yield state;
  }
}

const CASES = Number(process.env.KEYBRAKE_PATH_FUZZ_CASES ?? 3000);

/** Where a request tries to go (the proxy's vendor prefix is added to each). */
const TARGETS = [
  '/v1/payment_intents',
  '/v1/customers/cus_1',
  '/v1/refunds',
  '/v1/payouts',
  '/v1/customers/cus_1/sources',
  '/v1/payment_intents/pi_1/capture',
];

/** Ways to write `..`, `/`, and other separators a naive proxy or vendor might decode. */
const DOT_DOT = ['..', '%2e%2e', '%2E%2E', '.%2e', '%2e.', '%252e%252e', '%c0%ae%c0%ae', '..;', '%2e%2e%3b', '..%00'];
const SLASH = ['/', '%2f', '%2F', '%252f', '\\', '%5c', '//', '/./', '/%2e/', ';/'];

/** Headers some servers and frameworks use to change where or how a request is routed. */
const ROUTING_HEADERS: [string, string[]][] = [
  ['host', ['evil.example', '127.0.0.1', 'api.stripe.com', 'localhost:1', '']],
  ['x-http-method-override', ['DELETE', 'GET', 'POST', 'PUT']],
  ['x-http-method', ['DELETE', 'POST']],
  ['x-method-override', ['PATCH']],
  ['x-original-url', ['/v1/refunds']],
  ['x-rewrite-url', ['/v1/payouts']],
  ['x-forwarded-host', ['evil.example']],
  ['x-forwarded-prefix', ['/v1/refunds']],
];

interface RawAnswer {
  readonly status: number;
  readonly head: string;
}

/**
 * Writes the bytes as given and reads the status line of the answer (0: connection closed without
 * one). Every request says `Connection: close`, so the server's close ends the answer.
 */
function sendRaw(port: number, bytes: Buffer): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may close on a head it refuses before reading the rest of a large body.
      if (error.code === 'ECONNRESET' || error.code === 'EPIPE') finish();
      else reject(error);
    });
    const finish = (): void => {
      const text = Buffer.concat(chunks).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);
      resolve({ status, head: text.slice(0, 400) });
    };
    socket.on('end', finish);
    socket.setTimeout(10_000, () => {
      socket.destroy();
      reject(new Error('no answer in 10 s'));
    });
    // Not end(): a client's half-close makes Node's server drop a request still in progress.
    socket.write(bytes);
  });
}

describe('path fuzzer on the proxy (raw sockets, fake vendor logging every request)', () => {
  it(`${CASES} hostile request lines and heads: no 5xx, nothing forwarded off the allowlist`, async () => {
    const vendor = await startFakeVendor((_request, response) =>
      sendJson(response, 200, { id: 'pi_1', object: 'payment_intent', amount: 100, currency: 'usd' }),
    );
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const key = await proxy.issueKey({
      vendor: 'stripe',
      usd_cap: 1_000_000,
      allowed_endpoints: ['POST /v1/payment_intents', 'GET /v1/customers/*'],
    });
    const port = Number(new URL(proxy.url).port);
    const vendorHost = new URL(vendor.url).host;
    const random = choices(20261122);
    const pick = <T>(list: readonly T[]): T => list[(random.next().value as number) % list.length] as T;
    const chance = (percent: number): boolean => (random.next().value as number) % 100 < percent;

    const statuses = new Map<number, number>();
    let sentBytes = 0;
    for (let i = 0; i < CASES; i += 1) {
      // A target, then traversal spliced in: from an allowed path to a refused one, or the reverse.
      let path = pick(TARGETS);
      if (chance(70)) {
        const escape = `${pick(SLASH)}${pick(DOT_DOT)}${pick(SLASH)}${pick(DOT_DOT)}${pick(SLASH)}`;
        const [allowed, refused] = [pick(TARGETS.slice(0, 2)), pick(TARGETS.slice(2))];
        path = chance(50) ? `${allowed}${escape}${refused.slice(1)}` : `${refused}${escape}${allowed.slice(1)}`;
      }
      if (chance(15)) path = path.replace(/\//g, () => pick(SLASH));
      if (chance(10)) path += pick(['?_method=DELETE', '?x=1&_method=GET', '#frag', '?a=%0d%0aX:1', ';jsessionid=1']);
      let target = `/stripe${path}`;
      if (chance(10))
        target = `${pick(['http://evil.example', `http://${vendorHost}`, 'http://127.0.0.1:1'])}${target}`;
      if (chance(3)) target = pick(['*', 'stripe/v1/payment_intents', '//stripe/v1/payment_intents', '/stripe@evil/x']);
      const method = pick(['POST', 'POST', 'POST', 'GET', 'DELETE', 'PUT', 'PATCH', 'post', 'HEAD', 'OPTIONS']);

      const headers: string[] = [`Host: ${proxy.url.slice(7)}`, `Authorization: Bearer ${key.vault_key}`];
      for (const [name, values] of ROUTING_HEADERS) if (chance(8)) headers.push(`${name}: ${pick(values)}`);
      if (chance(3)) headers.push(`X-Injected: a\r\nX-Second: b`);
      if (chance(2)) target = `${target}\r\nX-Smuggled: 1`;
      if (chance(2)) headers.push(`X-Big: ${'a'.repeat(20_000)}`);
      let body = 'amount=100&currency=usd';
      if (chance(2)) body = `amount=100&currency=usd&pad=${'p'.repeat(1_100_000)}`;
      if (method === 'GET' || method === 'HEAD') body = '';
      headers.push('Content-Type: application/x-www-form-urlencoded', `Content-Length: ${Buffer.byteLength(body)}`);
      headers.push('Connection: close');
      const bytes = Buffer.from(`${method} ${target} HTTP/1.1\r\n${headers.join('\r\n')}\r\n\r\n${body}`, 'latin1');
      sentBytes += bytes.length;

      const before = vendor.received.length;
      const answer = await sendRaw(port, bytes);
      statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
      const context = `case ${i}: ${bytes.toString('latin1').slice(0, 300).replace(/\r\n/g, ' | ')} [${bytes.length} bytes] -> ${answer.head.slice(0, 200)}`;
      expect(answer.status, context).toBeGreaterThanOrEqual(200);
      expect(answer.status, context).toBeLessThan(500);
      // 2xx only when the vendor got exactly this one request; a refusal reached nobody.
      expect(vendor.received.length - before, context).toBe(answer.status === 200 ? 1 : 0);
    }

    // Everything the vendor received was on the allowlist, on its own host, with the real method.
    for (const request of vendor.received) {
      const pathname = request.url.split('?')[0] as string;
      const allowed =
        (request.method === 'POST' && pathname === '/v1/payment_intents') ||
        (request.method === 'GET' && /^\/v1\/customers\/[A-Za-z0-9_]+$/.test(pathname));
      expect(allowed, `${request.method} ${request.url}`).toBe(true);
      expect(request.headers.host).toBe(vendorHost);
      for (const [name] of ROUTING_HEADERS.slice(1)) expect(request.headers[name], name).toBeUndefined();
    }
    console.info(
      `path fuzzer: ${CASES} cases, ${Math.round(sentBytes / 1024)} KiB sent, ${vendor.received.length} forwarded (all on the allowlist); statuses:`,
      Object.fromEntries([...statuses].sort(([a], [b]) => a - b)),
    );
    expect(vendor.received.length).toBeGreaterThan(0);
  });
});
