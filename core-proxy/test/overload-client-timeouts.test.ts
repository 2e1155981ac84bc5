import { type Socket, connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startProxy } from './helpers.js';

const TIMEOUTS = { KEYBRAKE_HEADERS_TIMEOUT_MS: '300', KEYBRAKE_REQUEST_TIMEOUT_MS: '600' };

/** A raw connection to the proxy, with everything it received. */
async function open(url: string): Promise<{ socket: Socket; answer: () => string; closed: Promise<void> }> {
  const { port } = new URL(url);
  const socket = connect(Number(port), '127.0.0.1');
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = new Promise<void>((resolve) => {
    socket.on('close', () => resolve());
    socket.on('error', () => resolve());
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, answer: () => Buffer.concat(chunks).toString(), closed };
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Holds this process's event loop (the proxy's, in these tests) without yielding. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy: what a proxy flooded with 2,000 calls on a loaded machine looks like to its timers
  }
}

describe('client timeouts under overload (regression: 2,000-call bursts were answered with resets)', () => {
  it('requests that arrived before the event loop stalled past the headers timeout are answered, not cut', async () => {
    // A timeout long enough for a busy machine to open the connections well within it (Node's own
    // timeout failed this on any machine; the fair clock credits the stall at most one check, 375 ms).
    const proxy = await startProxy({
      env: { KEYBRAKE_HEADERS_TIMEOUT_MS: '1500', KEYBRAKE_REQUEST_TIMEOUT_MS: '3000' },
    });
    const clients = await Promise.all(Array.from({ length: 20 }, () => open(proxy.url)));
    await pause(20); // every connection accepted by the server
    // In the check phase, as a burst of I/O callbacks would: the timers phase comes next, before
    // the poll phase that reads the bytes now waiting in the proxy's socket buffers.
    await new Promise<void>((resolve) =>
      setImmediate(() => {
        for (const client of clients)
          client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        stall(5000); // the proxy too busy to read them for over 3x the headers timeout
        resolve();
      }),
    );
    await Promise.all(clients.map((client) => client.closed));
    const answers = clients.map((client) => client.answer().split('\r\n')[0]);
    expect(answers).toEqual(clients.map(() => 'HTTP/1.1 200 OK'));
  });

  it('a client that never finishes its headers still gets 408 request_timeout', async () => {
    const proxy = await startProxy({ env: TIMEOUTS });
    const client = await open(proxy.url);
    client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    await client.closed;
    expect(client.answer()).toMatch(/^HTTP\/1\.1 408 /);
    expect(client.answer()).toContain('"code":"request_timeout"');
  });

  it('a client that connects and sends nothing is cut with 408 too', async () => {
    const proxy = await startProxy({ env: TIMEOUTS });
    const client = await open(proxy.url);
    await client.closed;
    expect(client.answer()).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('an idle keep-alive connection is not a slow request: its next request is answered', async () => {
    const proxy = await startProxy({ env: TIMEOUTS });
    const client = await open(proxy.url);
    client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await pause(1200); // idle for 4x the headers timeout after its first answer
    expect(client.socket.destroyed).toBe(false);
    client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    await client.closed;
    expect(client.answer().match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
  });

  it('a next request trickled on a kept-alive connection is cut once it starts and stalls', async () => {
    const proxy = await startProxy({ env: TIMEOUTS });
    const client = await open(proxy.url);
    client.socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await pause(200);
    client.socket.write('GET /healthz HTTP/1.1\r\n');
    await client.closed;
    const answer = client.answer();
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK/);
    expect(answer).toContain('HTTP/1.1 408 ');
  });
});
