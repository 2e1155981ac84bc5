import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { onTestFinished } from 'vitest';

/** One alert as the receiver accepted it (signature and timestamp verified). */
export interface ReceivedAlert {
  readonly id: string;
  readonly type: string;
  readonly key_id: string;
  readonly cap: string;
  readonly period: string;
  readonly at_fraction: number | null;
  readonly spent_usd: number;
  readonly cap_usd: number;
  readonly [field: string]: unknown;
}

/** Options of {@link startAlertReceiver}. */
export interface AlertReceiverOptions {
  /** The HMAC key; null: a Slack-format receiver that checks no signature. */
  readonly secret: string | null;
  /** Answer 500 to this many well-signed deliveries before answering 200. @default 0 */
  readonly failFirst?: number;
  /** Largest accepted age of the signature's timestamp, seconds (Stripe's default tolerance). @default 300 */
  readonly toleranceS?: number;
}

/**
 * A real webhook receiver (node:http, port 0) as a user would write one: it verifies
 * `Keybrake-Signature` (HMAC-SHA256 of `<t>.<raw body>`, constant-time) and the timestamp's age,
 * refuses anything else with 400, answers 500 to the first deliveries and 200 after, and
 * de-duplicates by `id`. It can go down (`stop`) and come back on the same port (`start`).
 */
export async function startAlertReceiver(options: AlertReceiverOptions) {
  /** Every well-signed delivery, duplicates included. */
  const raw: ReceivedAlert[] = [];
  /** Slack bodies (`text`), in order. */
  const texts: string[] = [];
  const bad: string[] = [];
  let failuresLeft = options.failFirst ?? 0;
  let answered500 = 0;
  let server: Server | undefined;
  let port = 0;
  const waiters: (() => void)[] = [];

  const verify = (header: string | undefined, body: string): string | null => {
    if (options.secret === null) return null;
    const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
    if (!match) return 'no or malformed Keybrake-Signature';
    const t = Number(match[1]);
    if (Math.abs(Date.now() / 1000 - t) > (options.toleranceS ?? 300)) return 'stale timestamp';
    const expected = createHmac('sha256', options.secret).update(`${match[1]}.${body}`).digest();
    const given = Buffer.from(match[2] as string, 'hex');
    return timingSafeEqual(expected, given) ? null : 'signature mismatch';
  };

  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server = createServer((request, response) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          const problem = verify(request.headers['keybrake-signature'] as string | undefined, body);
          if (problem !== null) {
            bad.push(problem);
            response.writeHead(400).end();
            return;
          }
          if (failuresLeft > 0) {
            failuresLeft -= 1;
            answered500 += 1;
            response.writeHead(500).end();
            return;
          }
          const parsed = JSON.parse(body) as ReceivedAlert & { text?: string };
          if (options.secret === null) texts.push(String(parsed.text));
          else raw.push(parsed);
          response.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
          for (const wake of waiters.splice(0)) wake();
        });
      });
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        port = (server?.address() as AddressInfo).port;
        resolve();
      });
    });

  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server) return resolve();
      const closing = server;
      server = undefined;
      closing.close(() => resolve());
      closing.closeAllConnections();
    });

  await listen();
  onTestFinished(stop);

  /** Distinct alerts by id (the receiver's de-duplication). */
  const distinct = (): Map<string, ReceivedAlert> => new Map(raw.map((alert) => [alert.id, alert]));

  return {
    url: `http://127.0.0.1:${port}/hooks/keybrake`,
    raw,
    texts,
    bad,
    distinct,
    answered500: () => answered500,
    stop,
    start: listen,
    /** Resolves once `check` holds, re-checked after each accepted delivery (and every 250 ms). */
    async until(check: () => boolean, what: string, limitMs = 120_000): Promise<void> {
      const started = Date.now();
      while (!check()) {
        if (Date.now() - started > limitMs) throw new Error(`alert receiver: still waiting for ${what}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 250);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
  };
}
