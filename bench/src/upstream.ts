/**
 * The one mock upstream every variant forwards to: a Stripe-shaped `POST /v1/payment_intents`
 * (echoes the form's amount, so Keybrake settles the real cost) and an OpenAI-shaped
 * `POST /v1/chat/completions`, answering bodies of the same size at once. Run as its own process:
 * `node upstream.js <port>`; prints `listening <port>`.
 */
import { createServer } from 'node:http';

/** Both answers are padded to this many bytes, so the two routes cost the same to relay. */
export const ANSWER_BYTES = 512;

function pad(answer: Record<string, unknown>): string {
  const text = JSON.stringify({ ...answer, padding: '' });
  return text.replace('"padding":""', `"padding":"${'x'.repeat(Math.max(0, ANSWER_BYTES - text.length))}"`);
}

let sequence = 0;

function paymentIntent(form: string): string {
  const params = new URLSearchParams(form);
  sequence += 1;
  return pad({
    id: `pi_bench_${sequence}`,
    object: 'payment_intent',
    amount: Number(params.get('amount') ?? 0),
    currency: params.get('currency') ?? 'usd',
    status: 'requires_payment_method',
  });
}

function chatCompletion(): string {
  sequence += 1;
  return pad({
    id: `chatcmpl-bench-${sequence}`,
    object: 'chat.completion',
    created: 1_700_000_000,
    model: 'gpt-mock',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 8, completion_tokens: 1, total_tokens: 9 },
  });
}

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const path = request.url?.split('?')[0] ?? '';
    let body: string | undefined;
    if (request.method === 'POST' && path.endsWith('/v1/payment_intents')) {
      body = paymentIntent(Buffer.concat(chunks).toString());
    } else if (request.method === 'POST' && path.endsWith('/v1/chat/completions')) body = chatCompletion();
    if (body === undefined) {
      response.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
      return;
    }
    response.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      'request-id': `req_bench_${sequence}`,
    });
    response.end(body);
  });
});
server.keepAliveTimeout = 60_000;
const port = Number(process.argv[2] ?? 0);
server.listen(port, '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : port}\n`);
});
