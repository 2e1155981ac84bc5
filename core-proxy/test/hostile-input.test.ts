import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { rawRequest, sendJson, startFakeVendor, startProxy } from './helpers.js';
import { ISSUANCE_FIELDS } from '../src/keys/key-issuance.js';

/** Deterministic pseudo-random choices, so a failure can be replayed. */
function* choices(seed: number): Generator<number> {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    yield state;
  }
}

const WEIRD_VALUES: unknown[] = [
  null,
  true,
  -1,
  0,
  1e308,
  -1e308,
  Number.MAX_SAFE_INTEGER,
  0.0000001,
  '',
  ' ',
  '1h',
  '99999999999d',
  'x'.repeat(5000),
  '\u0000',
  '😀',
  [],
  [''],
  ['GET'],
  ['POST /v1/charges', 42],
  ['POST /%zz'],
  ['POST /../..'],
  {},
  { nested: { deeper: [1, 2, 3] } },
];
/** Every field issuance reads (from its own list, so a new one is fuzzed too), and prototype names. */
const FIELDS = [...ISSUANCE_FIELDS, '__proto__', 'constructor'];

describe('hostile input never causes a 5xx or loses the contract error shape', () => {
  it('admin: 300 mutated key requests never get a 5xx; refused ones carry a JSON error code', async () => {
    const proxy = await startProxy();
    const random = choices(42);
    const pick = <T>(list: readonly T[]): T => list[(random.next().value as number) % list.length] as T;
    const valid = { vendor: 'stripe', usd_cap: 5, allowed_endpoints: ['POST /v1/charges'], expires_in: '1h' };
    for (let i = 0; i < 300; i += 1) {
      const body: Record<string, unknown> = { ...valid };
      for (let j = 0; j < 1 + (i % 3); j += 1) body[pick(FIELDS)] = pick(WEIRD_VALUES);
      const text = i % 10 === 0 ? JSON.stringify(body).slice(0, -1 - (i % 7)) : JSON.stringify(body);
      const response = await proxy.call('/vault/keys', {
        method: 'POST',
        headers: { authorization: `Bearer ${proxy.apiKey}`, 'content-type': 'application/json' },
        body: text,
      });
      const answer = (await response.json()) as { error?: { code: string }; vault_key?: string };
      expect(response.status, text.slice(0, 200)).toBeLessThan(500);
      if (response.status !== 201) {
        expect(answer.error?.code, text.slice(0, 200)).toMatch(/^[a-z_]+$/);
      } else {
        // The mutation happened to be valid (e.g. tainted: true): the key must then be usable.
        expect(answer.vault_key).toMatch(/^kb_vk_/);
        await proxy.admin('DELETE', `/vault/keys/${(answer as { key_id: string }).key_id}`);
      }
    }
  });

  it('proxy: garbage paths, credentials, bodies and headers get 4xx JSON errors and reach no vendor', async () => {
    const vendor = await startFakeVendor((_request, response) => sendJson(response, 200, { id: 'ok' }));
    const proxy = await startProxy({
      env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url, KEYBRAKE_TWILIO_BASE_URL: vendor.url },
    });
    const key = await proxy.issueKey({ vendor: 'stripe', usd_cap: 5, allowed_endpoints: ['POST /v1/payment_intents'] });
    const random = choices(7);
    const pick = <T>(list: readonly T[]): T => list[(random.next().value as number) % list.length] as T;
    const paths = [
      '/stripe/',
      '/stripe/%',
      '/stripe/%00',
      '/stripe/v1/payment_intents/%2F',
      '/stripe/..',
      '/stripe/v1/' + 'a/'.repeat(1500),
      '/twilio/2010-04-01/Accounts//Messages.json',
      '/stripe/v1/payment_intents?amount=%ZZ',
    ];
    const auths = [
      '',
      'Bearer',
      'Bearer  ',
      'Basic !!!',
      `Basic ${Buffer.from('no-colon').toString('base64')}`,
      `Basic ${randomBytes(30).toString('base64')}`,
      `Bearer ${key.vault_key.slice(0, -1)}`,
      'Digest abc',
    ];
    const bodies = [
      '',
      'amount=-5&currency=usd',
      'amount=1e400&currency=usd',
      'amount=5&currency=zz%00',
      randomBytes(64).toString('latin1'),
      '{"amount": 5}',
    ];
    for (let i = 0; i < 200; i += 1) {
      const response = await rawRequest(
        proxy.url,
        pick(['GET', 'POST', 'DELETE', 'PATCH', 'OPTIONS']),
        pick(paths),
        {
          authorization: pick(auths),
          'content-type': pick([
            'application/x-www-form-urlencoded',
            'application/json',
            'text/plain',
            'multipart/form-data; boundary=x',
          ]),
          'idempotency-key': pick(['', 'k', 'k'.repeat(300)]),
        },
        pick(bodies),
      );
      expect(response.status, `${i}`).toBeLessThan(500);
      expect(JSON.parse(response.body).error?.code, `${i}: ${response.status} ${response.body.slice(0, 300)}`).toMatch(
        /^[a-z_]+$/,
      );
    }
    expect(vendor.received).toHaveLength(0);
  });
});
