/**
 * The plain fastify pass-through: the Node pass-through (passthrough.ts) with fastify in front,
 * set up as Keybrake sets up its proxy route (a logger at `warn`, every body read as raw bytes by
 * a catch-all parser, one wildcard route). What choosing fastify costs per call, before any check.
 * `node fastify-passthrough.js <port> <upstream>`.
 */
import Fastify from 'fastify';
import { Pool } from 'undici';

const [portArg, upstream] = process.argv.slice(2);
if (!upstream) throw new Error('usage: fastify-passthrough.js <port> <upstream url>');
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 60_000 });

const app = Fastify({ logger: { level: 'warn' }, keepAliveTimeout: 60_000 });
app.removeAllContentTypeParsers();
app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));
app.all('/*', async (request, reply) => {
  const headers = { ...request.headers };
  delete headers.host;
  delete headers.connection;
  const answer = await pool.request({
    method: request.method as 'POST',
    path: request.url,
    headers,
    body: Buffer.isBuffer(request.body) ? request.body : undefined,
  });
  const body = Buffer.from(await answer.body.arrayBuffer());
  const outgoing: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(answer.headers)) {
    if (value !== undefined && name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding')
      outgoing[name] = value;
  }
  return reply.code(answer.statusCode).headers(outgoing).send(body);
});
void app.listen({ port: Number(portArg ?? 0), host: '127.0.0.1' }).then(() => {
  const address = app.server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : portArg}\n`);
});
