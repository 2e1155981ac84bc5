import { createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { listenOnLoopback } from './helpers.js';

/** What reached the relay, per `METHOD /path`. */
export interface CountingRelay {
  readonly url: string;
  /** Requests the relay passed on to the vendor (the charges that really happened). */
  forwarded(line: string): number;
  /** Requests it answered itself with a 503, never passing them on. */
  refused(line: string): number;
  /** Every request passed on, in order, with the headers the vendor received. */
  readonly passedOn: readonly { readonly line: string; readonly headers: IncomingHttpHeaders }[];
}

/**
 * An HTTP relay between the proxy and stripe-mock that counts what reaches the vendor (stripe-mock
 * keeps no state, so this is the only independent witness of how many charges were sent). With
 * `failFirst`, the first N requests for that line get a 503 from the relay and go no further: a
 * transient upstream failure before anything was charged.
 */
export async function startRelay(
  target: string,
  options: { failFirst?: { line: string; times: number } } = {},
): Promise<CountingRelay> {
  const upstream = new URL(target);
  const forwarded = new Map<string, number>();
  const refused = new Map<string, number>();
  const passedOn: { line: string; headers: IncomingHttpHeaders }[] = [];
  const server = createServer((incoming: IncomingMessage, outgoing) => {
    const line = `${incoming.method} ${incoming.url?.split('?')[0]}`;
    const failures = refused.get(line) ?? 0;
    if (options.failFirst?.line === line && failures < options.failFirst.times) {
      refused.set(line, failures + 1);
      incoming.resume();
      outgoing.writeHead(503, { 'content-type': 'application/json' });
      outgoing.end(JSON.stringify({ error: { type: 'api_error', message: 'upstream temporarily unavailable' } }));
      return;
    }
    forwarded.set(line, (forwarded.get(line) ?? 0) + 1);
    passedOn.push({ line, headers: incoming.headers });
    const onward = request(
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
    onward.on('error', () => outgoing.destroy());
    incoming.pipe(onward);
  });
  const port = await listenOnLoopback(server);
  return {
    url: `http://127.0.0.1:${port}`,
    forwarded: (line) => forwarded.get(line) ?? 0,
    refused: (line) => refused.get(line) ?? 0,
    passedOn,
  };
}
