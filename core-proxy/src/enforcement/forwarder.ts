import { Agent, errors as undiciErrors, request } from 'undici';
import type { VendorResponse } from '../vendors/index.js';

/** Options of the upstream forwarder. */
export interface ForwarderOptions {
  /** Time to wait for the vendor's response headers, then for each body chunk. @default 60000 */
  readonly timeoutMs: number;
  /** Largest vendor response body accepted. @default 10 MiB */
  readonly maxResponseBytes: number;
}

/** What happened to a forwarded request. */
export type ForwardResult =
  | { readonly kind: 'response'; readonly response: VendorResponse }
  /** Nothing reached the vendor (connection refused, DNS failure): safe to release the reservation. */
  | { readonly kind: 'not_sent'; readonly error: Error }
  /** The request may have reached the vendor and we have no answer: the outcome is unknown. */
  | { readonly kind: 'unknown'; readonly timedOut: boolean; readonly error: Error };

const NOT_SENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/**
 * Sends one request upstream with undici. Never retries: a POST that may have charged must not
 * be re-sent by the proxy; the client retries with its idempotency key if it wants to.
 */
export class Forwarder {
  private readonly agent: Agent;

  constructor(private readonly options: ForwarderOptions) {
    this.agent = new Agent({
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 10_000),
      keepAliveTimeout: 4_000,
    });
  }

  async forward(
    url: string,
    method: string,
    headers: Record<string, string | string[]>,
    body: Buffer | undefined,
  ): Promise<ForwardResult> {
    try {
      const upstream = await request(url, {
        method: method as 'POST',
        headers,
        body: body && body.length > 0 ? body : undefined,
        dispatcher: this.agent,
      });
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of upstream.body) {
        size += (chunk as Buffer).length;
        if (size > this.options.maxResponseBytes) {
          upstream.body.destroy();
          return { kind: 'unknown', timedOut: false, error: new Error('vendor response too large') };
        }
        chunks.push(chunk as Buffer);
      }
      return {
        kind: 'response',
        response: { status: upstream.statusCode, headers: upstream.headers, body: Buffer.concat(chunks) },
      };
    } catch (error) {
      const err = error as Error & { code?: string; cause?: { code?: string } };
      const code = err.code ?? err.cause?.code ?? '';
      if (NOT_SENT_CODES.has(code)) return { kind: 'not_sent', error: err };
      const timedOut = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError;
      return { kind: 'unknown', timedOut, error: err };
    }
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}
