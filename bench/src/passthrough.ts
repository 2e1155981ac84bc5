/**
 * The plain Node pass-through: what any Node gateway costs before it checks anything. Relays
 * every request to the upstream over an undici keep-alive pool. `node passthrough.js <port> <upstream>`.
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const [portArg, upstream] = process.argv.slice(2);
if (!upstream) throw new Error('usage: passthrough.js <port> <upstream url>');
const pool = new Pool(upstream, { connections: 128, keepAliveTimeout: 60_000 });

const server = createServer((request, response) => {
  const chunks: Buffer[] = [];
  request.on('data', (chunk: Buffer) => chunks.push(chunk));
  request.on('end', () => {
    const headers = { ...request.headers };
    delete headers.host;
    delete headers.connection;
    pool
      .request({
        method: (request.method ?? 'GET') as 'POST',
        path: request.url ?? '/',
        headers,
        body: Buffer.concat(chunks),
      })
      .then(async (answer) => {
        const body = Buffer.from(await answer.body.arrayBuffer());
        const outgoing: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(answer.headers)) {
          if (value !== undefined && name !== 'connection' && name !== 'keep-alive' && name !== 'transfer-encoding')
            outgoing[name] = value;
        }
        response.writeHead(answer.statusCode, outgoing).end(body);
      })
      .catch(() => response.writeHead(502).end());
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(portArg ?? 0), '127.0.0.1', () => {
  const address = server.address();
  process.stdout.write(`listening ${typeof address === 'object' && address ? address.port : portArg}\n`);
});
