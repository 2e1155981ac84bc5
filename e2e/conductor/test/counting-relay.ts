import { createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

/**
 * An HTTP relay between the proxy and stripe-mock that counts what reaches the vendor: the only
 * independent witness of how many charges were really sent (stripe-mock keeps no state).
 */
export async function startCountingRelay(target: string): Promise<{ url: string; count(line: string): number }> {
  const upstream = new URL(target);
  const seen = new Map<string, number>();
  const server = createServer((incoming: IncomingMessage, outgoing) => {
    const line = `${incoming.method} ${incoming.url?.split('?')[0]}`;
    seen.set(line, (seen.get(line) ?? 0) + 1);
    const forwarded = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: incoming.method,
        path: incoming.url,
        headers: { ...incoming.headers, host: upstream.host },
      },
      (response) => {
        outgoing.writeHead(response.statusCode ?? 502, response.headers);
        response.pipe(outgoing);
      },
    );
    forwarded.on('error', () => outgoing.destroy());
    incoming.pipe(forwarded);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (line) => seen.get(line) ?? 0,
  };
}
