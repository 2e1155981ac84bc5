import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';

/**
 * A local sandbox standing in for Stripe in `pnpm demo`: it answers `POST /v1/payment_intents`
 * with a Stripe-shaped payment intent echoing `amount` and `currency`, after a short delay so the
 * fan-out really is concurrent. It moves no money and is not Stripe.
 */
export async function startSandboxStripe(
  delayMs = 20,
): Promise<{ url: string; server: Server; charged: () => number }> {
  let chargedCents = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const params = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const amount = Number(params.get('amount'));
      setTimeout(() => {
        if (request.method !== 'POST' || request.url !== '/v1/payment_intents' || !(amount > 0)) {
          response.writeHead(400, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ error: { type: 'invalid_request_error', message: 'sandbox: bad request' } }));
          return;
        }
        chargedCents += amount;
        response.writeHead(200, {
          'content-type': 'application/json',
          'request-id': `req_${randomBytes(8).toString('hex')}`,
        });
        response.end(
          JSON.stringify({
            id: `pi_${randomBytes(8).toString('hex')}`,
            object: 'payment_intent',
            amount,
            currency: params.get('currency') ?? 'usd',
          }),
        );
      }, delayMs);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, server, charged: () => chargedCents / 100 };
}
