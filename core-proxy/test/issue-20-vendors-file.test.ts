/**
 * Issue 20: KEYBRAKE_VENDORS_FILE, read strictly (start-up errors that name the file and the
 * field), and what a declared vendor's costs, key presentation and secret injection do, against
 * go-httpbin standing in as the vendor (a real third-party server that echoes requests).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { BUILT_IN_VENDORS } from '../src/vendors/registry.js';
import { VendorsFileError } from '../src/vendors/vendors-file.js';
import { startRelay } from './counting-relay.js';
import { type GoHttpbin, startGoHttpbin } from './go-httpbin.js';
import { json, newSecrets, startProxy } from './helpers.js';

const BUILT_IN_NAMES = BUILT_IN_VENDORS.map((vendor) => vendor.name);

function vendorsFile(yaml: string): string {
  const folder = mkdtempSync(join(tmpdir(), 'keybrake-vendors-'));
  onTestFinished(() => rmSync(folder, { recursive: true, force: true }));
  const file = join(folder, 'vendors.yaml');
  writeFileSync(file, yaml);
  return file;
}

/** A valid vendor entry, with `extra` lines appended to it. */
const ACME = (extra = '') => `
  - name: acme
    base_url: https://api.acme.example
    vault_key: { scheme: bearer }
    secret: { env: ACME_KEY, scheme: bearer }
${extra}`;

function startError(yaml: string, env: Record<string, string> = { ACME_KEY: 'acme-secret' }): VendorsFileError {
  const file = vendorsFile(yaml);
  try {
    loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_VENDORS_FILE: file, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(VendorsFileError);
    expect(error).toBeInstanceOf(ConfigError);
    const refused = error as VendorsFileError;
    expect(refused.message.startsWith(`${file}: `)).toBe(true);
    expect(refused.message).not.toContain('acme-secret');
    return refused;
  }
  throw new Error('the proxy started with a bad vendors file');
}

describe('issue 20: a bad KEYBRAKE_VENDORS_FILE stops the start with the file and the field', () => {
  it.each([
    ['an unknown field', `vendors:${ACME('    colour: blue')}`, 'vendors[0].colour', /unknown field/],
    ['an unknown top-level field', `vendors: []\nextra: 1`, 'extra', /unknown field/],
    [
      'a name taken by a built-in vendor',
      `vendors:${ACME().replace('name: acme', 'name: stripe')}`,
      'vendors[0].name',
      /already a vendor/,
    ],
    ['a duplicate name', `vendors:${ACME()}${ACME()}`, 'vendors[1].name', /"acme" is already a vendor/],
    [
      'a reserved name',
      `vendors:${ACME().replace('name: acme', 'name: vault')}`,
      'vendors[0].name',
      /proxy serves itself/,
    ],
    [
      'a malformed name',
      `vendors:${ACME().replace('name: acme', 'name: Acme_Pay')}`,
      'vendors[0].name',
      /not a vendor name/,
    ],
    [
      'a bad URL',
      `vendors:${ACME().replace('https://api.acme.example', 'not a url')}`,
      'vendors[0].base_url',
      /not a URL/,
    ],
    [
      'a URL that is not http(s)',
      `vendors:${ACME().replace('https://api.acme.example', 'ftp://acme.example')}`,
      'vendors[0].base_url',
      /not an http\(s\) URL/,
    ],
    [
      'an unknown key scheme',
      `vendors:${ACME().replace('vault_key: { scheme: bearer }', 'vault_key: { scheme: cookie }')}`,
      'vendors[0].vault_key.scheme',
      /one of: bearer, basic, header/,
    ],
    [
      'a header scheme with no header',
      `vendors:${ACME().replace('vault_key: { scheme: bearer }', 'vault_key: { scheme: header }')}`,
      'vendors[0].vault_key.header',
      /header name/,
    ],
    [
      'a header the proxy owns',
      `vendors:${ACME().replace('secret: { env: ACME_KEY, scheme: bearer }', 'secret: { env: ACME_KEY, scheme: header, header: Content-Length }')}`,
      'vendors[0].secret.header',
      /handles itself/,
    ],
    [
      'a bad endpoint',
      `vendors:${ACME('    costs: [{ endpoint: "FETCH /x", usd: 1 }]')}`,
      'vendors[0].costs[0].endpoint',
      /unsupported method/,
    ],
    [
      'a cost with two kinds',
      `vendors:${ACME('    costs: [{ endpoint: "POST /x", usd: 1, request_field: amount }]')}`,
      'vendors[0].costs[0]',
      /exactly one of/,
    ],
    [
      'a negative cost',
      `vendors:${ACME('    costs: [{ endpoint: "POST /x", usd: -1 }]')}`,
      'vendors[0].costs[0].usd',
      />= 0/,
    ],
    [
      'a response cost with no maximum',
      `vendors:${ACME('    costs: [{ endpoint: "POST /x", response_field: cost }]')}`,
      'vendors[0].costs[0].max_usd',
      /required with response_field/,
    ],
    ['a YAML repeated key', `vendors:${ACME('    name: other')}`, '', /not valid YAML/],
    ['not a list', `vendors: { name: acme }`, 'vendors', /must be a list/],
  ])('%s', (_what, yaml, field, problem) => {
    const error = startError(yaml);
    expect(error.field).toBe(field);
    expect(error.problem).toMatch(problem);
    expect(error.message).toContain(field === '' ? ': not valid YAML' : `: ${field}: `);
  });

  it('a secret that is not set', () => {
    const error = startError(
      `vendors:${ACME()}${ACME().replace('name: acme', 'name: acme-two').replace('ACME_KEY', 'ACME_TWO_KEY')}`,
    );
    expect(error.message).toMatch(/: vendors\[1\]\.secret\.env: ACME_TWO_KEY is not set \(nor ACME_TWO_KEY_FILE\)$/);
  });

  it('a file that cannot be read', () => {
    const missing = join(tmpdir(), `keybrake-no-such-${randomBytes(4).toString('hex')}.yaml`);
    expect(() => loadConfig({ KEYBRAKE_API_KEYS: 'k', KEYBRAKE_VENDORS_FILE: missing })).toThrow(
      `${missing}: cannot be read (ENOENT)`,
    );
  });

  it('reads the secret from NAME_FILE too', () => {
    const folder = mkdtempSync(join(tmpdir(), 'keybrake-secret-'));
    onTestFinished(() => rmSync(folder, { recursive: true, force: true }));
    writeFileSync(join(folder, 'acme'), 'from-a-file\n');
    const config = loadConfig({
      KEYBRAKE_API_KEYS: 'k',
      KEYBRAKE_VENDORS_FILE: vendorsFile(`vendors:${ACME()}`),
      ACME_KEY_FILE: join(folder, 'acme'),
    });
    expect(config.vendors.names()).toEqual([...BUILT_IN_NAMES, 'acme']);
    expect(config.vendorSecrets.acme).toEqual({ ACME_KEY: 'from-a-file' });
    expect(config.baseUrls.acme).toBe('https://api.acme.example');
  });

  it('refuses a KEYBRAKE_COST_RULES flat rule on an endpoint the file prices', () => {
    expect(() =>
      loadConfig({
        KEYBRAKE_API_KEYS: 'k',
        ACME_KEY: 's',
        KEYBRAKE_VENDORS_FILE: vendorsFile(`vendors:${ACME('    costs: [{ endpoint: "POST /v1/sms", usd: 0.05 }]')}`),
        KEYBRAKE_COST_RULES: JSON.stringify({ acme: { 'POST /v1/sms': 0 } }),
      }),
    ).toThrow(/prices itself/);
  });
});

describe('issue 20: what a declared vendor does (go-httpbin standing in as the vendor)', () => {
  let httpbin: GoHttpbin;
  beforeAll(async () => {
    httpbin = await startGoHttpbin();
  });
  afterAll(async () => {
    await httpbin?.stop();
  });

  async function declaredProxy(vendorYaml: (baseUrl: string) => string) {
    const relay = await startRelay(httpbin.url);
    const secret = `gw_${randomBytes(16).toString('hex')}`;
    const proxy = await startProxy({
      secrets: { ...newSecrets(), GATEWAY_SECRET: secret },
      env: { KEYBRAKE_VENDORS_FILE: vendorsFile(`vendors:\n${vendorYaml(`${relay.url}/anything`)}`) },
    });
    return { proxy, relay, secret };
  }

  const GATEWAY = (baseUrl: string, presentation: string, injection: string) => `
  - name: sms-gateway
    base_url: ${baseUrl}
    vault_key: ${presentation}
    secret: { env: GATEWAY_SECRET, ${injection} }
    costs:
      - { endpoint: POST /v1/sms, usd: 0.05 }
      - { endpoint: POST /v1/orders, request_field: order.total_usd, max_usd: 3 }
      - { endpoint: POST /v1/jobs, response_field: json.cost_usd, max_usd: 0.5 }
    request_id: { header: X-Gateway-Request }
    sensitive: [POST /v1/settings]
`;

  it('basic key presentation and basic injection: the vendor gets the secret, the echo comes back scrubbed', async () => {
    const { proxy, relay, secret } = await declaredProxy((url) =>
      GATEWAY(url, '{ scheme: basic, field: password }', 'scheme: basic, username: api'),
    );
    const key = await proxy.issueKey({ vendor: 'sms-gateway', usd_cap: 1, allowed_endpoints: ['POST /v1/sms'] });
    const response = await proxy.call('/sms-gateway/v1/sms', {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`ACME:${key.vault_key}`).toString('base64')}` },
    });
    const text = await response.text();
    expect(response.status, text).toBe(200);
    const token = Buffer.from(`api:${secret}`).toString('base64');
    expect(relay.passedOn[0]?.headers.authorization).toBe(`Basic ${token}`);
    // httpbin echoes the Authorization header: the proxy removed the secret's Basic token from it.
    expect(text).not.toContain(token);
    expect(JSON.parse(text).headers.Authorization).toEqual(['Basic [secret removed by keybrake]']);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0.05);
  });

  it('a named-header injection, and the request id read from a response header', async () => {
    const { proxy, relay, secret } = await declaredProxy((url) =>
      GATEWAY(url, '{ scheme: bearer }', 'scheme: header, header: X-Gateway-Token'),
    );
    const key = await proxy.issueKey({ vendor: 'sms-gateway', usd_cap: 1, allowed_endpoints: ['GET /v1/status'] });
    const response = await proxy.call('/sms-gateway/v1/status', {
      headers: { authorization: `Bearer ${key.vault_key}`, 'x-gateway-token': 'client-sent-this' },
    });
    const echoed = await json(response);
    expect(response.status).toBe(200);
    expect(relay.passedOn[0]?.headers['x-gateway-token']).toBe(secret);
    expect(echoed.headers['X-Gateway-Token']).toEqual(['[secret removed by keybrake]']);
    expect(relay.passedOn[0]?.headers.authorization).toBeUndefined();
  });

  it('reads the request id from the response header the file names', async () => {
    const { proxy } = await declaredProxy(
      (url) => `
  - name: echo
    base_url: ${url.replace(/\/anything$/, '')}
    vault_key: { scheme: bearer }
    secret: { env: GATEWAY_SECRET, scheme: bearer }
    request_id: { header: X-Gateway-Request }
`,
    );
    const key = await proxy.issueKey({ vendor: 'echo', usd_cap: 1, allowed_endpoints: ['GET /response-headers'] });
    // httpbin's /response-headers answers with the headers its query names.
    const response = await proxy.call('/echo/response-headers?X-Gateway-Request=req-42', {
      headers: { authorization: `Bearer ${key.vault_key}` },
    });
    expect(response.status).toBe(200);
    expect(response.headers.get('x-gateway-request')).toBe('req-42');
    await response.arrayBuffer();
    const calls = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body.calls;
    expect(calls).toMatchObject([{ outcome: 'forwarded', vendor: 'echo', vendor_request_id: 'req-42' }]);
  });

  it('scrubs the secret from response headers and drops the headers the file names, on the answer and its replay', async () => {
    const { proxy, relay, secret } = await declaredProxy(
      (url) => `
  - name: echo
    base_url: ${url.replace(/\/anything$/, '')}
    vault_key: { scheme: bearer }
    secret: { env: GATEWAY_SECRET, scheme: basic, username: api }
    costs: [{ endpoint: POST /response-headers, usd: 0.01 }]
    response_headers: { drop: [X-Internal-Trace] }
`,
    );
    const key = await proxy.issueKey({ vendor: 'echo', usd_cap: 1, allowed_endpoints: ['POST /response-headers'] });
    const token = Buffer.from(`api:${secret}`).toString('base64');
    // httpbin's /response-headers answers with the headers its query names: it stands in for a
    // vendor that echoes its credential (as sent, or as its Basic token) in a header. Every byte
    // is percent-encoded: the request line the proxy logs and audits is the test's, not a leak.
    const encoded = (text: string) => [...Buffer.from(text)].map((byte) => `%${byte.toString(16)}`).join('');
    const query = [
      ['X-Echo-Key', `key=${secret}; scope=all`],
      ['X-Echo-Auth', `Basic ${token}`],
      ['X-Echo-Auth', 'second value'],
      ['X-Internal-Trace', 'db-7.internal.acme:5432'],
      ['X-Kept', 'fine'],
    ]
      .map(([name, value]) => `${name}=${encoded(value!)}`)
      .join('&');
    const call = () =>
      proxy.call(`/echo/response-headers?${query}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'idempotency-key': 'echo-1' },
      });
    for (const response of [await call(), await call()]) {
      const body = await response.text();
      expect(response.status, body).toBe(200);
      expect(response.headers.get('x-echo-key')).toBe('key=[secret removed by keybrake]; scope=all');
      expect(response.headers.get('x-echo-auth')).toBe('Basic [secret removed by keybrake], second value');
      expect(response.headers.get('x-internal-trace')).toBeNull();
      expect(response.headers.get('x-kept')).toBe('fine');
      const everything = [...response.headers].join('\n') + body;
      expect(everything).not.toContain(secret);
      expect(everything).not.toContain(token);
    }
    // The second answer was the replay: the vendor was called once, and charged once.
    expect(relay.passedOn).toHaveLength(1);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0.01);
  });

  it('refuses a response_headers.drop entry that is not a header name', () => {
    const error = startError(`vendors:${ACME('    response_headers: { drop: ["not a header"] }')}`);
    expect(error.message).toContain('vendors[0].response_headers.drop[0]');
    expect(startError(`vendors:${ACME('    response_headers: { keep: [X-A] }')}`).message).toContain(
      'vendors[0].response_headers.keep: unknown field',
    );
  });

  it('a request-field cost is reserved from the request; missing or non-numeric is request_not_priceable, nothing forwarded', async () => {
    const { proxy, relay } = await declaredProxy((url) => GATEWAY(url, '{ scheme: bearer }', 'scheme: bearer'));
    const key = await proxy.issueKey({ vendor: 'sms-gateway', usd_cap: 5, allowed_endpoints: ['POST /v1/orders'] });
    const order = (body: string) =>
      proxy.call('/sms-gateway/v1/orders', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/json' },
        body,
      });
    for (const body of [
      '{}',
      '{"order":{}}',
      '{"order":{"total_usd":"lots"}}',
      '{"order":{"total_usd":-1}}',
      '{"order":{"total_usd":true}}',
      '{"order":{"total_usd":1,"total_usd":2}}',
      'not json',
      '{"order":{"total_usd":3.5}}',
    ]) {
      const response = await order(body);
      expect(response.status, body).toBe(400);
      expect((await json(response)).error.code, body).toBe('request_not_priceable');
    }
    expect(relay.passedOn).toHaveLength(0);
    const priced = await order('{"order":{"total_usd":2.25}}');
    expect(priced.status).toBe(200);
    await priced.arrayBuffer();
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(2.25);
  });

  it('a response-field cost reserves its maximum and settles from the answer', async () => {
    const { proxy, relay } = await declaredProxy((url) => GATEWAY(url, '{ scheme: bearer }', 'scheme: bearer'));
    const key = await proxy.issueKey({ vendor: 'sms-gateway', usd_cap: 1, allowed_endpoints: ['POST /v1/jobs'] });
    const job = (body: unknown) =>
      proxy.call('/sms-gateway/v1/jobs', {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    // httpbin echoes the request as `json`: the answer says what the job cost.
    expect((await job({ cost_usd: 0.12 })).status).toBe(200);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0.12);
    // An answer that does not say books the whole reservation.
    expect((await job({ other: 1 })).status).toBe(200);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0.62);
    // $0.38 left, under the $0.50 reservation: refused before the vendor, whatever it would cost.
    const refused = await job({ cost_usd: 0.01 });
    expect(refused.status).toBe(429);
    expect(refused.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect(relay.forwarded('POST /anything/v1/jobs')).toBe(2);
  });

  it('declared sensitive endpoints and priced ones are refused to tainted requests; others are forwarded free', async () => {
    const { proxy, relay } = await declaredProxy((url) => GATEWAY(url, '{ scheme: bearer }', 'scheme: bearer'));
    const key = await proxy.issueKey({
      vendor: 'sms-gateway',
      usd_cap: 1,
      allowed_endpoints: ['POST /v1/settings', 'POST /v1/sms', 'GET /v1/status'],
    });
    const headers = { authorization: `Bearer ${key.vault_key}`, 'x-keybrake-provenance': 'untrusted' };
    for (const path of ['/v1/settings', '/v1/sms']) {
      const response = await proxy.call(`/sms-gateway${path}`, { method: 'POST', headers });
      expect(response.status, path).toBe(403);
      expect((await json(response)).error.code).toBe('tainted_request_refused');
    }
    const free = await proxy.call('/sms-gateway/v1/status', { headers });
    expect(free.status).toBe(200);
    await free.arrayBuffer();
    expect(relay.passedOn.map((request) => request.line)).toEqual(['GET /anything/v1/status']);
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBe(0);
  });

  it('serves the declared vendor in /openapi.json and in issuance errors', async () => {
    const { proxy } = await declaredProxy((url) => GATEWAY(url, '{ scheme: bearer }', 'scheme: bearer'));
    const document = await json(await proxy.call('/openapi.json'));
    expect(document.components.schemas.IssueKeyRequest.properties.vendor.enum).toEqual([
      ...BUILT_IN_NAMES,
      'sms-gateway',
    ]);
    const vendorParameter = document.paths['/{vendor}/{path}'].parameters.find(
      (parameter: { name: string }) => parameter.name === 'vendor',
    );
    expect(vendorParameter.schema.enum).toContain('sms-gateway');
    const refused = await proxy.admin('POST', '/vault/keys', {
      vendor: 'nope',
      usd_cap: 1,
      allowed_endpoints: ['GET /x'],
      expires_in: '1h',
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toBe(`vendor must be one of: ${[...BUILT_IN_NAMES, 'sms-gateway'].join(', ')}.`);
  });
});
