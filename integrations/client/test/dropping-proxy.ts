import { connect, createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

/**
 * A TCP relay in front of the real proxy that lets the first `drops` requests through but drops
 * their responses (the client sees the connection reset after the call was made), then relays
 * normally: what a flaky network does to a charge that already happened.
 */
export async function startDroppingRelay(target: string, drops = 1): Promise<{ url: string; dropped: () => number }> {
  const { hostname, port } = new URL(target);
  let dropped = 0;
  let claimed = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    const drop = claimed < drops;
    claimed += 1;
    client.pipe(upstream);
    if (drop) {
      upstream.once('data', () => {
        dropped += 1;
        client.destroy();
        upstream.destroy();
      });
    } else {
      upstream.pipe(client);
    }
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  onTestFinished(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, dropped: () => dropped };
}
