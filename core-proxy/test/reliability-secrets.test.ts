import { describe, expect, it } from 'vitest';
import { json, startFakeVendor, startProxy, stripeCharge } from './helpers.js';

const STRIPE_KEY = { vendor: 'stripe', usd_cap: 100, allowed_endpoints: ['POST /v1/payment_intents'] };

describe('the injected secret goes to the vendor and nowhere else (fake vendors)', () => {
  it('does not follow a redirect from the upstream: the other host gets nothing, the caller gets the 3xx as it came', async () => {
    const elsewhere = await startFakeVendor((_request, response) => {
      response.writeHead(200).end('{}');
    });
    for (const status of [301, 302, 303, 307, 308]) {
      const vendor = await startFakeVendor((_request, response) => {
        response.writeHead(status, { location: `${elsewhere.url}/v1/payment_intents` }).end();
      });
      const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
      const issued = await proxy.issueKey(STRIPE_KEY);
      // The test's own client must not follow either (fetch would, by default).
      const response = await proxy.call('/stripe/v1/payment_intents', {
        method: 'POST',
        redirect: 'manual',
        headers: { authorization: `Bearer ${issued.vault_key}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: 'amount=500&currency=usd',
      });
      expect(response.status, `vendor answered ${status}`).toBe(status);
      expect(response.headers.get('location')).toBe(`${elsewhere.url}/v1/payment_intents`);
      await response.arrayBuffer();
      // The vendor got the real secret once; the host it pointed to got no request at all.
      expect(vendor.received).toHaveLength(1);
      expect(vendor.received[0]!.headers.authorization).toBe(`Bearer ${proxy.secrets.STRIPE_SECRET_KEY}`);
      expect(elsewhere.received).toHaveLength(0);
      const calls = (await proxy.admin('GET', `/vault/keys/${issued.key_id}/calls`)).body.calls as { status: number }[];
      expect(calls.map((call) => call.status)).toEqual([status]);
    }
  });

  it('answers an upstream that resets the connection with a JSON error that carries no secret', async () => {
    const vendor = await startFakeVendor((_request, response) => {
      response.socket?.destroy();
    });
    const proxy = await startProxy({ env: { KEYBRAKE_STRIPE_BASE_URL: vendor.url } });
    const issued = await proxy.issueKey(STRIPE_KEY);
    const response = await stripeCharge(proxy, issued.vault_key, 500);
    expect(response.status).toBeGreaterThanOrEqual(500);
    const body = await json(response);
    expect(typeof body.error.code).toBe('string');
    // The proxy's leak check (every response, log line and store file) runs when the test ends.
  });
});
