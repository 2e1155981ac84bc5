import { Agent, type Dispatcher, errors as undiciErrors } from 'undici';
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
 *
 * It dispatches with a handler of its own instead of undici's `request()`: the answer is buffered
 * whole anyway (it is priced, masked and kept for replay), so `request()`'s body stream, its async
 * iterator (a promise per chunk) and its async resource were work per call for nothing.
 */
export class Forwarder {
  private readonly agent: Agent;

  constructor(private readonly options: ForwarderOptions) {
    // One keep-alive pool per vendor origin (an Agent keeps one per origin).
    this.agent = new Agent({
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connectTimeout: Math.min(options.timeoutMs, 10_000),
      keepAliveTimeout: 4_000,
    });
  }

  forward(
    url: string,
    method: string,
    headers: Record<string, string | string[]>,
    body: Buffer | undefined,
  ): Promise<ForwardResult> {
    return new Promise<ForwardResult>((resolve) => {
      const handler = new BufferingHandler(this.options.maxResponseBytes, resolve);
      try {
        const pathAt = url.indexOf('/', url.indexOf('//') + 2);
        this.agent.dispatch(
          {
            origin: pathAt < 0 ? url : url.slice(0, pathAt),
            path: pathAt < 0 ? '/' : url.slice(pathAt),
            method: method as Dispatcher.HttpMethod,
            headers,
            body: body && body.length > 0 ? body : undefined,
          },
          handler,
        );
      } catch (error) {
        handler.onResponseError(undefined, error as Error);
      }
    });
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

/** Collects one answer whole, and settles the forward's promise exactly once. */
class BufferingHandler implements Dispatcher.DispatchHandler {
  private status = 0;
  private headers: VendorResponse['headers'] = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;
  private done = false;

  constructor(
    private readonly maxBytes: number,
    private readonly resolve: (result: ForwardResult) => void,
  ) {}

  /** Present so undici dispatches with this (controller) interface, not its legacy one. */
  onRequestStart(): void {}

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: VendorResponse['headers'],
  ): void {
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.done) return;
    this.size += chunk.length;
    if (this.size > this.maxBytes) {
      this.finish({ kind: 'unknown', timedOut: false, error: new Error('vendor response too large') });
      controller.abort(new Error('vendor response too large'));
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    const body = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.finish({ kind: 'response', response: { status: this.status, headers: this.headers, body } });
  }

  onResponseError(_controller: Dispatcher.DispatchController | undefined, error: Error): void {
    const err = error as Error & { code?: string; cause?: { code?: string } };
    const code = err.code ?? err.cause?.code ?? '';
    if (NOT_SENT_CODES.has(code)) return this.finish({ kind: 'not_sent', error: err });
    const timedOut = err instanceof undiciErrors.HeadersTimeoutError || err instanceof undiciErrors.BodyTimeoutError;
    this.finish({ kind: 'unknown', timedOut, error: err });
  }

  private finish(result: ForwardResult): void {
    if (this.done) return;
    this.done = true;
    this.resolve(result);
  }
}
