import { describe, expect, it } from 'vitest';
import { json, sendJson, startFakeVendor, startProxy } from './helpers.js';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Twilio and Resend have no official mock server that runs here: these use a fake vendor of our own. */
describe('twilio (fake vendor)', () => {
  async function setup(reply: (request: { url: string; body: string }) => { status: number; body: unknown }) {
    const vendor = await startFakeVendor((request, response) => {
      const { status, body } = reply(request);
      sendJson(response, status, body);
    });
    const proxy = await startProxy({
      env: { KEYBRAKE_TWILIO_BASE_URL: vendor.url, KEYBRAKE_TWILIO_SEGMENT_USD: '0.01' },
    });
    const key = await proxy.issueKey({
      vendor: 'twilio',
      usd_cap: 1,
      allowed_endpoints: ['POST /2010-04-01/Accounts/*/Messages.json'],
    });
    return { vendor, proxy, key };
  }
  const sid = (proxy: { secrets: Record<string, string> }) => proxy.secrets.TWILIO_ACCOUNT_SID as string;
  const message = (realSid: string, price: string | null) => ({
    sid: 'SM0123456789abcdef0123456789abcdef',
    account_sid: realSid,
    uri: `/2010-04-01/Accounts/${realSid}/Messages/SM0123.json`,
    price,
    price_unit: 'USD',
    num_segments: '1',
  });

  it('rewrites the account SID, injects the real credentials and hides the real SID from the client', async () => {
    let realSid = '';
    const { vendor, proxy, key } = await setup(() => ({ status: 201, body: message(realSid, '-0.00790') }));
    realSid = sid(proxy);
    const response = await proxy.call('/twilio/2010-04-01/Accounts/ACplaceholder/Messages.json', {
      method: 'POST',
      headers: {
        authorization: basic('ACplaceholder', key.vault_key),
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: 'To=%2B15005550006&From=%2B15005550001&Body=hello',
    });
    expect(response.status).toBe(201);
    const body = await json(response);
    expect(body.account_sid).toBe('ACplaceholder');
    expect(body.uri).toBe('/2010-04-01/Accounts/ACplaceholder/Messages/SM0123.json');
    expect(vendor.received[0]?.url).toBe(`/2010-04-01/Accounts/${realSid}/Messages.json`);
    expect(vendor.received[0]?.headers.authorization).toBe(basic(realSid, proxy.secrets.TWILIO_AUTH_TOKEN as string));
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls[0]).toMatchObject({
      vendor_request_id: 'SM0123456789abcdef0123456789abcdef',
      cost_usd: 0.0079,
      path: '/2010-04-01/Accounts/ACplaceholder/Messages.json',
    });
  });

  it('accepts the vault key as the Basic username too', async () => {
    const { proxy, key } = await setup(() => ({ status: 201, body: message('ACx', null) }));
    const response = await proxy.call('/twilio/2010-04-01/Accounts/ACplaceholder/Messages.json', {
      method: 'POST',
      headers: { authorization: basic(key.vault_key, 'unused'), 'content-type': 'application/x-www-form-urlencoded' },
      body: 'To=%2B15005550006&Body=hi',
    });
    expect(response.status).toBe(201);
    // No price yet: settled with the configured per-segment estimate.
    expect((await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body.spent_usd).toBeCloseTo(0.01, 6);
  });

  it('estimates long and unicode bodies by segment, and stops at the cap', async () => {
    // No price and no segment count in the answer: settled at the estimate.
    const { vendor, proxy, key } = await setup(() => ({
      status: 201,
      body: { ...message('ACx', null), num_segments: null },
    }));
    const send = (text: string) =>
      proxy.call('/twilio/2010-04-01/Accounts/ACplaceholder/Messages.json', {
        method: 'POST',
        headers: {
          authorization: basic('ACplaceholder', key.vault_key),
          'content-type': 'application/x-www-form-urlencoded',
        },
        body: new URLSearchParams({ To: '+15005550006', Body: text }).toString(),
      });
    // 1,530 GSM characters = 10 segments = $0.10 reserved; 671 emoji-free UCS-2 chars = 11 segments.
    for (let i = 0; i < 9; i += 1) expect((await send('a'.repeat(1530))).status).toBe(201);
    const capped = await send('ж'.repeat(671));
    expect(capped.status).toBe(429);
    expect(capped.headers.get('x-keybrake-cap-hit')).toBe('true');
    expect(vendor.received).toHaveLength(9);
  });
});

describe('resend (fake vendor)', () => {
  it('charges a configured price per email, per batch entry, and nothing for a refused send', async () => {
    let status = 200;
    const vendor = await startFakeVendor((request, response) =>
      sendJson(
        response,
        status,
        request.url === '/emails/batch' ? { data: [{ id: 'e1' }, { id: 'e2' }] } : { id: 'email_1' },
      ),
    );
    const proxy = await startProxy({
      env: { KEYBRAKE_RESEND_BASE_URL: vendor.url, KEYBRAKE_RESEND_EMAIL_USD: '0.25' },
    });
    const key = await proxy.issueKey({
      vendor: 'resend',
      usd_cap: 1,
      allowed_endpoints: ['POST /emails', 'POST /emails/batch'],
    });
    const post = (path: string, body: unknown) =>
      proxy.call(`/resend${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key.vault_key}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const email = { from: 'a@example.com', to: 'b@example.com', subject: 'hi', text: 'hi' };
    expect((await post('/emails', email)).status).toBe(200);
    expect(vendor.received[0]?.headers.authorization).toBe(`Bearer ${proxy.secrets.RESEND_API_KEY}`);
    expect((await post('/emails/batch', [email, email])).status).toBe(200);
    status = 422;
    expect((await post('/emails', email)).status).toBe(422);
    const state = (await proxy.admin('GET', `/vault/keys/${key.key_id}`)).body;
    expect(state.spent_usd).toBeCloseTo(0.75, 6);
    const over = await post('/emails/batch', [email, email]);
    expect(over.status).toBe(429);
    const { calls } = (await proxy.admin('GET', `/vault/keys/${key.key_id}/calls`)).body;
    expect(calls.map((c: { vendor_request_id: string | null }) => c.vendor_request_id)).toEqual([
      'email_1',
      null,
      'email_1',
      null,
    ]);
  });
});
