import type { IncomingMessage, Server } from 'node:http';
import type { Socket } from 'node:net';

/** Options of {@link installClientTimeouts}. */
export interface ClientTimeoutOptions {
  /** Longest a client may take to send a request's headers, from its first byte (or connecting). */
  readonly headersTimeoutMs: number;
  /** Longest a client may take to send a whole request, headers and body. */
  readonly requestTimeoutMs: number;
  /** How often connections are checked. @default a quarter of the headers timeout, 50 ms to 1 s */
  readonly checkEveryMs?: number;
}

/** Where one connection is in its current request. */
interface Tracked {
  /** `waiting`: for the next request's bytes; `headers`/`body`: receiving them; `in`: received. */
  phase: 'waiting' | 'headers' | 'body' | 'in';
  /** The load-fair clock when the current request started arriving. */
  startedAt: number;
  request: IncomingMessage | undefined;
  /** Bytes read when the connection last went `waiting`: more means the next request started. */
  bytesAtWait: number;
}

/**
 * Slow-client timeouts that a busy proxy does not turn against its own clients. Regression: under
 * overload (2,000 calls at once on a loaded machine), Node's own `headersTimeout` /
 * `requestTimeout` reset connections whose requests had long arrived. Node measures those on the
 * wall clock and checks them in the timers phase, which runs before the poll phase that would read
 * the waiting bytes: after the event loop was stalled past the timeout, every connection accepted
 * before the stall was cut (408, then a reset for the unread request), though the clients had sent
 * everything at once.
 *
 * Here time counts on a load-fair clock: each check advances it by the time since the last check,
 * but by at most one check interval (a late check means a busy loop, not a slow client). A stall of the proxy's own making therefore never counts
 * against a client, while between two checks the loop has polled every socket, so a client still
 * missing bytes after `headersTimeoutMs` of fair time really has not sent them. A timed-out
 * connection gets what Node's own timeout gives it: a `clientError` with code
 * `ERR_HTTP_REQUEST_TIMEOUT` (answered 408 `request_timeout` by the app's handler).
 */
export function installClientTimeouts(server: Server, options: ClientTimeoutOptions): void {
  // Node's own wall-clock timeouts are replaced, not stacked (their defaults are 60 s and 300 s).
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  const every =
    options.checkEveryMs ??
    Math.max(50, Math.min(1000, Math.floor(Math.min(options.headersTimeoutMs, options.requestTimeoutMs) / 4)));
  const connections = new Map<Socket, Tracked>();
  let fair = 0;
  let lastCheck = performance.now();

  server.on('connection', (socket: Socket) => {
    connections.set(socket, { phase: 'headers', startedAt: fair, request: undefined, bytesAtWait: 0 });
    socket.once('close', () => connections.delete(socket));
  });
  server.on('request', (request: IncomingMessage, response) => {
    const tracked = connections.get(request.socket);
    if (!tracked) return;
    // A request that began while the connection looked idle started at the check that saw its bytes.
    if (tracked.phase === 'waiting') tracked.startedAt = fair;
    tracked.phase = request.complete ? 'in' : 'body';
    tracked.request = request;
    response.once('finish', () => {
      if (connections.get(request.socket) !== tracked || tracked.request !== request) return;
      tracked.phase = 'waiting';
      tracked.request = undefined;
      tracked.bytesAtWait = request.socket.bytesRead;
    });
  });

  const timer = setInterval(() => {
    const now = performance.now();
    fair += Math.min(now - lastCheck, every);
    lastCheck = now;
    for (const [socket, tracked] of connections) {
      if (tracked.phase === 'waiting') {
        // Idle keep-alive connections are Node's keepAliveTimeout's business; new bytes start a request.
        if (socket.bytesRead > tracked.bytesAtWait) {
          tracked.phase = 'headers';
          tracked.startedAt = fair;
        }
        continue;
      }
      if (tracked.phase === 'body' && tracked.request?.complete) tracked.phase = 'in';
      if (tracked.phase === 'in') continue;
      const elapsed = fair - tracked.startedAt;
      const limit = tracked.phase === 'headers' ? options.headersTimeoutMs : options.requestTimeoutMs;
      if (elapsed <= limit) continue;
      connections.delete(socket);
      const error = Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' });
      if (server.listenerCount('clientError') > 0) server.emit('clientError', error, socket);
      else socket.destroy(error);
    }
  }, every);
  timer.unref();
  server.once('close', () => clearInterval(timer));
}
