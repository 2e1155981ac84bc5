import { createServer, type AddressInfo } from 'node:net';

// No vitest import here: global setups (which run outside the test context) use this file.

/**
 * A free loopback port, for a process that must be told its port in advance (redis-server, an
 * engine). Never assume a fixed port such as 6379 is free. A server of this process listens on
 * port 0 instead (`listenOnLoopback` in helpers.ts).
 */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}
